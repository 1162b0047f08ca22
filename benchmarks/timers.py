#!/usr/bin/env python
"""How fast the timer loop drains a backlog (hardening issue, item 3), against a baseline in the
same run.

    python benchmarks/timers.py [--offers 1000]

On a fresh SQLite database in a temp directory: `--offers` workers each get one offer (expiry
1 h). The clock then jumps past every expiry by 30 s, as after 30 s of downtime with every offer
due, plus 200 poison rows (a kind no handler runs) due before them. Reported:
- baseline: `offer_expire` called directly for each offer (the handler alone, one transaction
  each), on a copy of the same database;
- loop: `run_due_timers` passes back to back until nothing is due (claim, handler, the re-offer
  it owes, the poison rows backing off), on the other copy;
- the ratio, and how many expiries carry their due time (all must).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import prepare_environment, setup_django  # noqa: E402


def seed(offers: int) -> None:
    from routing.models import Offer
    from routing.services.timers import run_due_timers
    from tests import factories

    factories.queue_with_policy("q1", expires=3600)
    for i in range(offers):
        factories.worker(f"w{i:05d}")
        factories.queued_job(f"j{i:05d}")
    while run_due_timers():
        pass
    open_offers = Offer.objects.filter(status="open").count()
    assert open_offers == offers, (open_offers, offers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--offers", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="timers-bench-"))
    try:
        prepare_environment(tmp, "jobrouter.settings")
        setup_django()
        import time_machine
        from django.db import connection

        from routing import clock
        from routing.models import Offer, RouterTimer
        from routing.services.offers import offer_expire
        from routing.services.timers import run_due_timers

        started = time.perf_counter()
        seed(args.offers)
        print(f"seeded {args.offers} offers in {time.perf_counter() - started:.1f} s")
        connection.close()
        shutil.copy(tmp / "bench.sqlite3", tmp / "baseline.sqlite3")
        due = clock.now() + timedelta(seconds=3630)

        with time_machine.travel(due, tick=True):
            # The loop, on the seeded database.
            for i in range(200):
                RouterTimer.objects.create(kind="noSuchKind", target_id=f"p{i}", due_at=due - timedelta(seconds=60))
            started = time.perf_counter()
            passes = 0
            while run_due_timers():
                passes += 1
            loop_s = time.perf_counter() - started
            on_time = sum(1 for o in Offer.objects.filter(status="expired") if o.ended_at == o.expires_at)
            connection.close()

            # The baseline: the same handlers, called directly, on the copy.
            shutil.copy(tmp / "baseline.sqlite3", tmp / "bench.sqlite3")
            for suffix in ("-wal", "-shm"):
                (tmp / f"bench.sqlite3{suffix}").unlink(missing_ok=True)
            ids = [str(pk) for pk in Offer.objects.filter(status="open").values_list("pk", flat=True)]
            started = time.perf_counter()
            for offer_id in ids:
                offer_expire(offer_id=offer_id)
            baseline_s = time.perf_counter() - started

        n = args.offers
        print(f"baseline (offer_expire directly): {n} expiries in {baseline_s:.2f} s = {n / baseline_s:.0f}/s")
        print(f"timer loop ({passes} passes, 200 poison rows first): {n} expiries in {loop_s:.2f} s "
              f"= {n / loop_s:.0f}/s; ratio {loop_s / baseline_s:.2f}x of the baseline")
        print(f"expiries stamped with their due time: {on_time}/{n}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
