"""The people in permission tests, built the way an installation builds them.

- supervisor: staff, with every permission on the router's models, but not a superuser (so a
  check that wrongly asks for superuser, or forgets is_staff, shows up);
- alice and bob: agents, created with `manage.py createagent` (a login linked to a worker):
  alice serves q1 at priority 5 and takes offers, bob serves q1 in Do-Not-Disturb;
- outsider: a login with no worker;
- customer: a login with no worker who joins queues through the self-service page.

Passwords are hashed with MD5 here: PBKDF2's deliberate cost (about a quarter of a second per
user) would be most of a websocket test's time, and these tests sign in with sessions
(`force_login`), never with the password. Password sign-in through the forms is covered by the
browser tests against the live server, with the real hashers.

The agents need their queues first: request `agents` after the fixture that creates q1 (and q2).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client

FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PASSWORD = "pw"


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def supervisor(db, fast_passwords) -> User:
    user = User.objects.create_user("supervisor", "sup@example.com", PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="routing"))
    return user


@pytest.fixture
def outsider(db, fast_passwords) -> User:
    return User.objects.create_user("outsider", password=PASSWORD)


@pytest.fixture
def customer(db, fast_passwords) -> User:
    return User.objects.create_user("customer", password=PASSWORD)


def create_agent(username: str, *queues: str, available: bool) -> User:
    """A desk login and its worker (id = username) through `manage.py createagent`; `queues` as
    the command takes them (`q1:5` = queue q1 at agent priority 5)."""
    args = [username, "--password", PASSWORD]
    for queue in queues:
        args += ["--queue", queue]
    if available:
        args.append("--available")
    call_command("createagent", *args, stdout=io.StringIO())
    return User.objects.get(username=username)


@dataclass
class Agents:
    alice: User
    bob: User


@pytest.fixture
def agents(db, fast_passwords) -> Agents:
    return Agents(
        alice=create_agent("alice", "q1:5", available=True),
        bob=create_agent("bob", "q1", available=False),
    )


def logged_in(user: User) -> Client:
    """A browser (Django test client) with `user`'s session."""
    browser = Client()
    browser.force_login(user)
    return browser


def session_cookie(user: User) -> str:
    """`Cookie` header value carrying a session for `user`."""
    return f"{django_settings.SESSION_COOKIE_NAME}={logged_in(user).cookies[django_settings.SESSION_COOKIE_NAME].value}"
