"""Unit tests for the routing-rule expression language (routing.engine.expressions).

Plain Python, no database: run with
    python -m pytest -p no:django tests/test_expressions.py -q
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from routing.engine import expressions
from routing.engine.expressions import CompiledExpression, ExpressionError, compile_expression


def ev(source: str, job: dict[str, Any] | None = None, worker: dict[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(job=job, worker=worker)


def syntax_error(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    return info.value


def runtime_error(source: str, **labels: Any) -> ExpressionError:
    compiled = compile_expression(source)
    with pytest.raises(ExpressionError) as info:
        compiled.evaluate(**labels)
    return info.value


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("source", "expected"),
    [("10", 10), ("2.5", 2.5), (".5", 0.5), ("1e3", 1000.0), ("0", 0), ("2.0", 2.0)],
)
def test_number_literals_parse_to_int_or_float(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


def test_string_literal_doubled_quote_is_an_escaped_quote() -> None:
    assert ev('"say ""hi"""') == 'say "hi"'


def test_empty_string_literal() -> None:
    assert ev('""') == ""


def test_string_literal_keeps_single_quotes_and_spaces() -> None:
    assert ev('"it\'s  here"') == "it's  here"


@pytest.mark.parametrize(("source", "expected"), [("true", True), ("FALSE", False), ("True", True)])
def test_boolean_literals_are_case_insensitive(source: str, expected: bool) -> None:
    assert ev(source) is expected


# --------------------------------------------------------------------------- labels


def test_job_label_reference_returns_label_value() -> None:
    assert ev("job.Language", job={"Language": "en"}) == "en"


def test_worker_label_reference_returns_label_value() -> None:
    assert ev("worker.Skill", worker={"Skill": 7}) == 7


def test_missing_label_is_blank() -> None:
    assert ev("job.Nope", job={"Other": 1}) is None


def test_missing_label_maps_are_treated_as_empty() -> None:
    assert ev("job.x") is None
    assert ev("worker.x") is None


def test_label_keys_are_case_sensitive() -> None:
    assert ev("job.tier", job={"Tier": "Gold"}) is None
    assert ev("job.Tier", job={"Tier": "Gold"}) == "Gold"


def test_job_and_worker_keywords_are_case_insensitive() -> None:
    assert ev("JOB.a & Worker.b", job={"a": "x"}, worker={"b": "y"}) == "xy"


def test_quoted_identifier_reaches_label_with_dash() -> None:
    assert ev("job.'Some-Skill' = 5", job={"Some-Skill": 5}) is True


def test_quoted_identifier_allows_spaces_dots_and_doubled_quote() -> None:
    labels = {"a b.c": 1, "it's": 2}
    assert ev("job.'a b.c' + job.'it''s'", job=labels) == 3


def test_label_named_like_a_keyword_is_a_plain_label() -> None:
    labels = {"And": 1, "true": 2, "If": 3, "job": 4}
    assert ev("job.And + job.true + job.If + job.job", job=labels) == 10


def test_identifiers_starting_with_keywords_are_not_split() -> None:
    # `Android` must not lex as `And` + `roid`; as a bare name it is then reported as such.
    err = syntax_error("Android")
    assert err.message == "Unknown name 'Android'"
    assert (err.line, err.column) == (1, 1)


def test_unicode_label_name() -> None:
    assert ev("job.Größe", job={"Größe": 3}) == 3


def test_whitespace_and_newlines_are_insignificant() -> None:
    assert ev("  job . x\n  =\t 1 ", job={"x": 1}) is True


def test_decimal_label_values_become_numbers() -> None:
    assert ev("job.a + job.b", job={"a": Decimal("2"), "b": Decimal("0.5")}) == 2.5
    assert type(ev("job.a", job={"a": Decimal("2")})) is int


def test_unsupported_label_value_type_is_a_runtime_error() -> None:
    err = runtime_error("1 + job.list", job={"list": [1, 2]})
    assert err.message == "Unsupported label value"
    assert "job.list" in str(err)
    assert (err.line, err.column) == (1, 5)


# --------------------------------------------------------------------------- comparison


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 = 1", True),
        ("1 = 1.0", True),
        ("1 <> 2", True),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2", True),
        ("2 >= 3", False),
        ('"a" = "a"', True),
        ('"a" = "A"', False),
        ('"a" < "b"', True),
        ("true = true", True),
        ("true <> false", True),
    ],
)
def test_comparison_operators(source: str, expected: bool) -> None:
    assert ev(source) is expected


def test_blank_equals_blank() -> None:
    assert ev("job.a = job.b") is True
    assert ev("job.a <> job.b") is False


def test_blank_is_not_equal_to_zero_or_empty_string() -> None:
    assert ev("job.a = 0") is False
    assert ev('job.a = ""') is False
    assert ev("job.a <> 0") is True


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_with_blank_is_false_on_either_side(op: str) -> None:
    assert ev(f"job.missing {op} 5") is False
    assert ev(f"5 {op} job.missing") is False
    assert ev(f"job.a {op} job.b") is False


def test_number_compared_with_string_is_unequal_not_an_error() -> None:
    assert ev('1 = "1"') is False
    assert ev('1 <> "1"') is True


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_number_against_string_is_false(op: str) -> None:
    assert ev(f'1 {op} "1"') is False
    assert ev(f'"1" {op} 1') is False


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_booleans_do_not_order(op: str) -> None:
    assert ev(f"false {op} true") is False
    assert ev(f"true {op} true") is False


def test_boolean_never_equals_number() -> None:
    # Python's True == 1 must not leak through.
    assert ev("true = 1") is False
    assert ev("false = 0") is False


def test_comparisons_chain_left_to_right() -> None:
    # (1 < 2) = true
    assert ev("1 < 2 = true") is True


# --------------------------------------------------------------------------- logic


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true And false", False),
        ("true and true", True),
        ("true AND true", True),
        ("false Or true", True),
        ("false or false", False),
        ("Not true", False),
        ("not false", True),
        ("true && false", False),
        ("false || true", True),
        ("!true", False),
        ("!!true", True),
        ("Not Not true", True),
    ],
)
def test_logic_operators_keywords_and_symbols(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("And(true, true, true)", True),
        ("And(true, false, true)", False),
        ("and(true)", True),
        ("Or(false, false, true)", True),
        ("OR(false)", False),
        ("Not(true)", False),
        ("not(false)", True),
    ],
)
def test_logic_function_forms(source: str, expected: bool) -> None:
    assert ev(source) is expected


def test_function_form_can_be_combined_with_infix_form() -> None:
    assert ev("And(true, false) Or Or(false, true)") is True


def test_and_short_circuits_past_a_runtime_error() -> None:
    assert ev("false And 1/0 = 1") is False
    assert ev("And(false, 1/0)") is False


def test_or_short_circuits_past_a_runtime_error() -> None:
    assert ev("true || 1/0 = 1") is True
    assert ev("Or(true, 1/0)") is True


def test_blank_is_falsy() -> None:
    assert ev("job.missing Or false") is False
    assert ev("Not job.missing") is True


def test_numbers_are_truthy_unless_zero() -> None:
    assert ev("job.n And true", job={"n": 3}) is True
    assert ev("job.n And true", job={"n": 0}) is False


def test_text_true_and_false_are_accepted_as_booleans() -> None:
    assert ev('"TRUE" And true') is True
    assert ev('Not "false"') is True


def test_other_text_as_boolean_is_a_type_error_at_the_operand() -> None:
    err = runtime_error('true And "yes"')
    assert err.message == "Type mismatch"
    assert (err.line, err.column) == (1, 10)
    assert 'text "yes"' in str(err)


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2", 3),
        ("5 - 7", -2),
        ("3 * 4", 12),
        ("6 / 3", 2),
        ("7 / 2", 3.5),
        ("2.5 * 2", 5.0),
        ("1.5 + 1.5", 3.0),
        ("-3", -3),
        ("- -3", 3),
        ("2 * -3", -6),
        ("(1 + 2) * 3", 9),
    ],
)
def test_arithmetic(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


def test_integral_result_of_two_ints_is_int_but_float_operand_gives_float() -> None:
    assert type(ev("6 / 3")) is int
    assert type(ev("6.0 / 3")) is float
    assert type(ev("2 * 1.5")) is float


def test_blank_is_zero_in_arithmetic() -> None:
    assert ev("job.missing + 5") == 5
    assert ev("10 - job.missing") == 10
    assert ev("-job.missing") == 0
    assert ev("job.missing * 3") == 0


def test_division_by_zero_reports_the_operator_position() -> None:
    err = runtime_error("10 /\n 0")
    assert err.message == "Division by zero"
    assert (err.position, err.line, err.column) == (3, 1, 4)
    assert "at line 1, column 4" in str(err)


def test_division_by_blank_is_division_by_zero() -> None:
    assert runtime_error("1 / job.missing").message == "Division by zero"


def test_text_in_arithmetic_is_a_type_error() -> None:
    err = runtime_error('job.x + 1', job={"x": "abc"})
    assert err.message == "Type mismatch"
    assert (err.line, err.column) == (1, 7)
    assert 'text "abc"' in str(err)


def test_boolean_in_arithmetic_is_a_type_error() -> None:
    assert runtime_error("true * 2").message == "Type mismatch"


def test_unary_minus_on_text_is_a_type_error() -> None:
    err = runtime_error('-"a"')
    assert (err.message, err.column) == ("Type mismatch", 1)


# --------------------------------------------------------------------------- concatenation


def test_concatenation_joins_text() -> None:
    assert ev('"a" & "b" & "c"') == "abc"


def test_concatenation_treats_blank_as_empty_string() -> None:
    assert ev('"x" & job.missing & "y"') == "xy"


def test_concatenation_formats_numbers_and_booleans() -> None:
    assert ev('1 & "-" & 2.5 & "-" & 2.0 & "-" & true') == "1-2.5-2-true"


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("10 - 4 - 3", 3),  # left-associative
        ("12 / 2 / 3", 2),
        ("-2 * 3 + 1", -5),
        ('1 + 2 & "x"', "3x"),  # + binds tighter than &
        ('"n" & 1 + 1', "n2"),
        ('"a" & "b" = "ab"', True),  # & binds tighter than comparison
        ("1 + 1 = 2", True),
    ],
)
def test_precedence_of_value_operators(source: str, expected: Any) -> None:
    assert ev(source) == expected


def test_and_binds_tighter_than_or() -> None:
    assert ev("true Or false And false") is True  # true Or (false And false)
    assert ev("true || false && false") is True


def test_not_binds_looser_than_comparison() -> None:
    # Not (1 = 2), not (Not 1) = 2
    assert ev("Not 1 = 2") is True
    assert ev("!job.a = 1", job={"a": 1}) is False


def test_not_binds_tighter_than_and() -> None:
    # (Not false) And false
    assert ev("Not false And false") is False


def test_parentheses_override_precedence() -> None:
    assert ev("(true Or false) And false") is False
    assert ev("(1 + 2) * 3") == 9


def test_deep_parenthesis_nesting_is_supported() -> None:
    assert ev("(" * 500 + "1" + ")" * 500) == 1


# --------------------------------------------------------------------------- If


def test_if_returns_then_branch_when_condition_true() -> None:
    assert ev('If(job.Tier = "Gold", 10, 1)', job={"Tier": "Gold"}) == 10


def test_if_returns_else_branch_when_label_missing() -> None:
    assert ev('If(job.Tier = "Gold", 10, 1)') == 1


def test_if_without_else_gives_blank_when_false() -> None:
    assert ev("If(false, 1)") is None


def test_if_multi_branch_picks_first_true_condition() -> None:
    rule = 'If(job.p > 10, "high", job.p > 5, "medium", "low")'
    assert ev(rule, job={"p": 11}) == "high"
    assert ev(rule, job={"p": 6}) == "medium"
    assert ev(rule, job={"p": 1}) == "low"


def test_if_multi_branch_without_else_gives_blank() -> None:
    assert ev("If(false, 1, false, 2)") is None
    assert ev("If(false, 1, true, 2)") == 2


def test_if_evaluates_only_the_chosen_branch() -> None:
    assert ev("If(job.d = 0, 0, 100 / job.d)", job={"d": 0}) == 0
    assert ev("If(job.d = 0, 0, 100 / job.d)", job={"d": 4}) == 25


def test_if_function_name_is_case_insensitive() -> None:
    assert ev("if(TRUE, 1, 2)") == 1
    assert ev("IF(false, 1, 2)") == 2


# --------------------------------------------------------------------------- other functions


def test_isblank_true_for_missing_label_and_empty_string() -> None:
    assert ev("IsBlank(job.x)") is True
    assert ev('IsBlank("")') is True
    assert ev("isblank(job.x)", job={"x": 0}) is False
    assert ev("ISBLANK(Blank())") is True


def test_blank_function_returns_none() -> None:
    assert ev("Blank()") is None
    assert ev("job.x = Blank()") is True


def test_abs() -> None:
    assert ev("Abs(-3)") == 3
    assert ev("Abs(-2.5)") == 2.5
    assert ev("Abs(job.missing)") == 0


def test_abs_of_text_is_a_type_error_at_the_function_name() -> None:
    err = runtime_error(' Abs("x")')
    assert (err.message, err.line, err.column) == ("Type mismatch", 1, 2)


def test_min_and_max() -> None:
    assert ev("Min(3, 1, 2)") == 1
    assert ev("Max(3, 1, 2)") == 3
    assert ev("max(1, 2.5)") == 2.5
    assert ev("Min(7)") == 7


def test_min_and_max_ignore_blank_arguments() -> None:
    assert ev("Min(job.missing, 4, 9)") == 4
    assert ev("Max(job.missing, -4)") == -4
    assert ev("Max(job.a, job.b)") is None


def test_text_converts_values_to_strings() -> None:
    assert ev("Text(5)") == "5"
    assert ev("Text(2.50)") == "2.5"
    assert ev("Text(4 / 2)") == "2"
    assert ev("Text(true)") == "true"
    assert ev("Text(job.missing)") == ""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('Value("10")', 10),
        ('Value(" 2.5 ")', 2.5),
        ('Value("-3")', -3),
        ('Value("1e2")', 100.0),
        ("Value(7)", 7),
        ("Value(true)", 1),
    ],
)
def test_value_converts_to_number(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


def test_value_of_blank_or_empty_text_is_blank() -> None:
    assert ev("Value(job.missing)") is None
    assert ev('Value("")') is None


def test_value_enables_arithmetic_on_text_labels() -> None:
    assert ev("Value(job.Age) + 1", job={"Age": "41"}) == 42


@pytest.mark.parametrize("text", ["abc", "nan", "inf", "1_000", "1,5"])
def test_value_of_non_numeric_text_is_an_error(text: str) -> None:
    err = runtime_error(f'Value("{text}")')
    assert err.message == "Invalid number"
    assert (err.line, err.column) == (1, 1)


# --------------------------------------------------------------------------- syntax errors


def test_syntax_error_double_equals_reports_line_and_column() -> None:
    err = syntax_error("job.x = = 1")
    assert (err.position, err.line, err.column) == (8, 1, 9)
    assert "at line 1, column 9" in str(err)
    assert "unexpected '='" in str(err)


def test_syntax_error_unclosed_paren_points_at_end_of_input() -> None:
    err = syntax_error("(1 + 2")
    assert (err.line, err.column) == (1, 7)
    assert "end of expression" in str(err)
    assert "')'" in str(err)


def test_syntax_error_on_second_line() -> None:
    err = syntax_error("job.x\n  + * 3")
    assert (err.position, err.line, err.column) == (10, 2, 5)
    assert "at line 2, column 5" in str(err)


def test_unknown_function_is_a_compile_error_at_its_name() -> None:
    err = syntax_error("1 + Foo(2)")
    assert err.message == "Unknown function 'Foo'"
    assert (err.position, err.line, err.column) == (4, 1, 5)
    assert "at line 1, column 5" in str(err)


@pytest.mark.parametrize(
    ("source", "column", "detail"),
    [
        ("If(true)", 1, "If takes at least 2 arguments, got 1"),
        ("  IsBlank()", 3, "IsBlank takes 1 argument, got 0"),
        ("Abs(1, 2)", 1, "Abs takes 1 argument, got 2"),
        ("Blank(1)", 1, "Blank takes 0 arguments, got 1"),
        ("Min()", 1, "Min takes at least 1 argument, got 0"),
        ("And()", 1, "And takes at least 1 argument, got 0"),
    ],
)
def test_wrong_argument_count_is_a_compile_error(source: str, column: int, detail: str) -> None:
    err = syntax_error(source)
    assert err.message == "Wrong number of arguments"
    assert (err.line, err.column) == (1, column)
    assert detail in str(err)


def test_bare_identifier_is_rejected_with_a_hint() -> None:
    err = syntax_error("x = 1")
    assert err.message == "Unknown name 'x'"
    assert "job.x" in str(err)
    assert (err.line, err.column) == (1, 1)


def test_empty_expression_is_a_syntax_error() -> None:
    err = syntax_error("   ")
    assert (err.line, err.column) == (1, 4)


def test_unexpected_character_is_a_syntax_error() -> None:
    err = syntax_error("1 @ 2")
    assert (err.line, err.column) == (1, 3)
    assert "'@'" in str(err)


def test_unterminated_string_is_reported_at_its_opening_quote() -> None:
    err = syntax_error('job.x = "abc')
    assert (err.line, err.column) == (1, 9)
    assert "unterminated string" in str(err)


def test_unterminated_quoted_label_is_reported() -> None:
    err = syntax_error("job.'abc = 1")
    assert (err.line, err.column) == (1, 5)
    assert "unterminated quoted label" in str(err)


def test_label_reference_without_name_is_a_syntax_error() -> None:
    err = syntax_error("job. = 1")
    assert (err.line, err.column) == (1, 6)
    assert "label name" in str(err)


def test_python_style_operators_are_not_accepted() -> None:
    assert syntax_error("1 == 1").column == 4
    assert syntax_error("1 != 1").column == 3


def test_two_values_without_operator_is_a_syntax_error() -> None:
    err = syntax_error("1 2")
    assert (err.line, err.column) == (1, 3)


def test_non_string_source_is_rejected() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(42)  # type: ignore[arg-type]
    assert info.value.position is None
    assert info.value.line is None


def test_excessively_nested_expression_is_an_expression_error_not_a_crash() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        ev("-" * 1500 + "1")  # under the size limits, over the depth limit


def test_expression_error_is_a_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)


# --------------------------------------------------------------------------- API and cache


def test_compiled_expression_keeps_source_and_is_reusable() -> None:
    compiled = compile_expression("job.p * 2")
    assert isinstance(compiled, CompiledExpression)
    assert compiled.source == "job.p * 2"
    assert compiled.evaluate(job={"p": 2}) == 4
    assert compiled.evaluate(job={"p": 5}) == 10


def test_evaluate_accepts_any_mapping() -> None:
    from types import MappingProxyType

    assert ev("job.a", job=MappingProxyType({"a": "v"})) == "v"  # type: ignore[arg-type]


def test_compiling_same_source_twice_hits_the_cache() -> None:
    source = "job.cache_probe_unique_1 + 1"
    before = expressions._compile_cached.cache_info()
    first = compile_expression(source)
    second = compile_expression(source)
    after = expressions._compile_cached.cache_info()
    assert first is second
    assert after.misses == before.misses + 1
    assert after.hits == before.hits + 1


def test_cached_expression_does_not_reparse(monkeypatch: pytest.MonkeyPatch) -> None:
    source = "job.cache_probe_unique_2 = 1"
    compile_expression(source)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parser called for a cached source")

    monkeypatch.setattr(expressions._PARSER, "parse", fail)
    assert compile_expression(source).evaluate(job={"cache_probe_unique_2": 1}) is True


def test_failed_compilation_is_not_cached() -> None:
    source = "job.cache_probe_unique_3 = = 1"
    for _ in range(2):
        with pytest.raises(ExpressionError):
            compile_expression(source)
    # Both attempts re-raised a proper error rather than caching a broken result.
    assert syntax_error(source).column == 28


def test_empty_text_is_falsy() -> None:
    assert ev('"" Or false') is False
    assert ev('Not ""') is True


# --------------------------------------------------------------------------- documented examples


def test_documented_tier_priority_example() -> None:
    rule = 'If(job.Tier = "Gold", 10, job.Tier = "Silver", 5, 1)'
    assert [ev(rule, job={"Tier": t}) for t in ("Gold", "Silver", "Bronze")] == [10, 5, 1]
    assert ev(rule) == 1


def test_documented_bonus_example_tolerates_missing_label() -> None:
    rule = "job.BasePriority + Max(job.Bonus, 0)"
    assert ev(rule, job={"BasePriority": 3}) == 3
    assert ev(rule, job={"BasePriority": 3, "Bonus": 4}) == 7


def test_documented_language_or_supervisor_example() -> None:
    rule = 'job.Language = "es" Or (job.Urgent && worker.Role = "Supervisor")'
    assert ev(rule, job={"Language": "es"}) is True
    assert ev(rule, job={"Urgent": True}, worker={"Role": "Supervisor"}) is True
    assert ev(rule, job={"Urgent": True}, worker={"Role": "Agent"}) is False


def test_documented_queue_id_and_default_examples() -> None:
    queue = '"queue-" & job.Region & "-" & Text(job.Tier)'
    assert ev(queue, job={"Region": "eu", "Tier": 2}) == "queue-eu-2"
    default = 'If(IsBlank(job.Department), "general", job.Department)'
    assert ev(default) == "general"
    assert ev(default, job={"Department": "sales"}) == "sales"


@pytest.mark.parametrize(("source", "column"), [("2 ^ 3", 3), ("5 % 2", 3), ("1 // note", 4)])
def test_unsupported_powerfx_syntax_is_rejected_at_compile_time(source: str, column: int) -> None:
    err = syntax_error(source)
    assert err.message == "Syntax error"
    assert err.column == column
