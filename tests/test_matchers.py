"""Alertmanager matcher syntax and semantics (pkg/labels, matcher/parse)."""

from __future__ import annotations

import copy
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.matchers import (
    Matcher,
    MatcherError,
    MatchOp,
    matches_all,
    parse_matcher,
    parse_matchers,
)


def om_escape(value: str) -> str:
    """Quote-body escaping as Alertmanager prints values (OpenMetrics style)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# --- semantics --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        # =
        ('job="api"', {"job": "api"}, True),
        ('job="api"', {"job": "web"}, False),
        ('job="api"', {"job": "API"}, False),
        # !=
        ('job!="api"', {"job": "web"}, True),
        ('job!="api"', {"job": "api"}, False),
        # =~
        ('job=~"api|web"', {"job": "web"}, True),
        ('job=~"api|web"', {"job": "db"}, False),
        # !~
        ('job!~"api|web"', {"job": "db"}, True),
        ('job!~"api|web"', {"job": "api"}, False),
        # other labels are irrelevant
        ('job="api"', {"job": "api", "env": "prod"}, True),
    ],
)
def test_every_operator(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ('job=~"api"', "api", True),
        ('job=~"api"', "api-2", False),
        ('job=~"api"', "my-api", False),
        ('job=~"api.*"', "api-2", True),
        ('job=~".*api"', "my-api", True),
        ('job=~"a|b"', "ab", False),  # the whole alternation is anchored, not just its ends
        ('job=~"a|bc"', "bc", True),
        ('job!~"api"', "api-2", True),
        ('job=~"."', "\n", False),  # "." does not match a line feed (no (?s)), as in RE2
        ('job=~"(?s)."', "\n", True),
        ('job=~"\\\\d+"', "123", True),
        ('job=~"\\\\d+"', "\u0663", False),  # Arabic-Indic three: RE2's \d is ASCII-only
        ('job=~"(?i)API"', "api", True),
    ],
)
def test_regexes_are_fully_anchored(text: str, value: str, expected: bool) -> None:
    assert parse_matcher(text).matches({"job": value}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('foo!="bar"', True),
        ('foo=""', True),
        ("foo=", True),
        ('foo=~".*"', True),
        ('foo=~""', True),
        ('foo=~".+"', False),
        ('foo!~".+"', True),
        ('foo!~".*"', False),
        ('foo="bar"', False),
        ('foo!=""', False),
        ('foo=~"bar|"', True),
    ],
)
def test_missing_label_is_the_empty_string(text: str, expected: bool) -> None:
    assert parse_matcher(text).matches({"other": "x"}) is expected


@pytest.mark.parametrize(
    ("spec", "labels", "expected"),
    [
        ('{a="x", b=~"y|z"}', {"a": "x", "b": "z"}, True),
        ('{a="x", b=~"y|z"}', {"a": "x", "b": "w"}, False),
        ('{a="x", b=~"y|z"}', {"b": "y"}, False),
        ("{}", {"anything": "at all"}, True),
        ("", {}, True),
    ],
)
def test_matches_all(spec: str, labels: dict[str, str], expected: bool) -> None:
    assert matches_all(parse_matchers(spec), labels) is expected


@pytest.mark.parametrize(
    ("op", "expected"),
    [(MatchOp.EQ, True), (MatchOp.NE, False), (MatchOp.RE, False), (MatchOp.NRE, False)],
)
def test_is_equality(op: MatchOp, expected: bool) -> None:
    assert Matcher("job", op, "api").is_equality is expected


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('job="api"', "job", MatchOp.EQ, "api"),
        ('job!="api"', "job", MatchOp.NE, "api"),
        ('job=~"a|b"', "job", MatchOp.RE, "a|b"),
        ('job!~"a|b"', "job", MatchOp.NRE, "a|b"),
        # unquoted values run to the end and are trimmed
        ("job=api", "job", MatchOp.EQ, "api"),
        ("  job  !=  api server  ", "job", MatchOp.NE, "api server"),
        ("job=~[a-z]+", "job", MatchOp.RE, "[a-z]+"),
        ("job=~\\d+", "job", MatchOp.RE, "\\d+"),
        ("statuscode=~5..", "statuscode", MatchOp.RE, "5.."),
        ("job=🙂", "job", MatchOp.EQ, "🙂"),
        ("job=", "job", MatchOp.EQ, ""),
        ("job=a=b", "job", MatchOp.EQ, "a=b"),
        # whitespace around every token
        (' job = "api" ', "job", MatchOp.EQ, "api"),
        ('job =~ "api"', "job", MatchOp.RE, "api"),
        # names: classic (with the colon Alertmanager's parser allows) and quoted UTF-8
        ('_a:b_9="x"', "_a:b_9", MatchOp.EQ, "x"),
        ('"my.label"="x"', "my.label", MatchOp.EQ, "x"),
        ('"service name"!~"a|b"', "service name", MatchOp.NRE, "a|b"),
        ('"🙂"=x', "🙂", MatchOp.EQ, "x"),
        ('"job"="api"', "job", MatchOp.EQ, "api"),
        # quoted values keep inner whitespace, commas and braces
        ('job="  api  "', "job", MatchOp.EQ, "  api  "),
        ('msg="a, b"', "msg", MatchOp.EQ, "a, b"),
        ('msg="{x}"', "msg", MatchOp.EQ, "{x}"),
        ('msg="=~!"', "msg", MatchOp.EQ, "=~!"),
        ('msg=""', "msg", MatchOp.EQ, ""),
        # a trailing comma is allowed, as in Alertmanager
        ('job="api",', "job", MatchOp.EQ, "api"),
    ],
)
def test_parse_matcher(text: str, name: str, op: MatchOp, value: str) -> None:
    assert parse_matcher(text) == Matcher(name, op, value)


@pytest.mark.parametrize(
    ("quoted", "value"),
    [
        ('"\\""', '"'),
        ('"\\\\"', "\\"),
        ('"a\\nb"', "a\nb"),
        ('"a\\tb"', "a\tb"),
        ('"\\r\\a\\b\\f\\v"', "\r\a\b\f\v"),
        ('"\\u00e9t\\u00e9"', "été"),
        ('"\\U0001F642"', "🙂"),
        ('"\\x41\\101"', "AA"),  # hex and octal bytes
        ('"\\xf0\\x9f\\x99\\x82"', "🙂"),  # bytes forming UTF-8
        ('"She said: \\"Hi, ladies!\\""', 'She said: "Hi, ladies!"'),
        ('"a,b}c{d"', "a,b}c{d"),
        ('"tab\there"', "tab\there"),  # a raw tab is fine inside quotes
        # Text Go rejects is decoded the classic way: only \n, \" and \\ are escapes.
        ('"\\d+\\.\\d+"', "\\d+\\.\\d+"),
        ('"\\d\\n"', "\\d\n"),
        ('"\\\'"', "\\'"),  # \' is not a Go escape inside double quotes
        ('"\\u12"', "\\u12"),
        ('"\\ud800"', "\\ud800"),  # a surrogate is not a rune
        ('"\\xf0\\x9f"', "\\xf0\\x9f"),  # not valid UTF-8
        ('"line\nfeed\\t"', "line\nfeed\\t"),  # Go refuses a raw line feed
    ],
)
def test_quoted_values_use_go_escapes(quoted: str, value: str) -> None:
    assert parse_matcher(f"name={quoted}").value == value


@pytest.mark.parametrize(
    ("unquoted", "value"),
    [
        ("a\\nb", "a\nb"),
        ("a\\\\b", "a\\b"),
        ('a\\"b', 'a"b'),
        ("a\\tb", "a\\tb"),  # the classic unescape leaves other backslashes alone
    ],
)
def test_unquoted_values_use_classic_escapes(unquoted: str, value: str) -> None:
    assert parse_matcher(f"name={unquoted}").value == value


EXPECTED_SET = (
    Matcher("a", MatchOp.EQ, "x"),
    Matcher("b", MatchOp.RE, "y|z"),
    Matcher("c", MatchOp.NE, "p, q}"),
)


@pytest.mark.parametrize(
    "spec",
    [
        '{a="x", b=~"y|z", c!="p, q}"}',
        '{a="x",b=~"y|z",c!="p, q}",}',
        '  { a = "x" , b =~ "y|z" , c != "p, q}" }  ',
        'a="x", b=~"y|z", c!="p, q}"',
        'a=x,b=~y|z,c!="p, q}",',
        ['a="x"', 'b=~"y|z"', 'c!="p, q}"'],
        ('{a="x"}', 'b=~"y|z", c!="p, q}"'),
        ['{a="x", b=~"y|z"}', "{}", 'c!="p, q}"'],
        ["a=x", "", '{b=~"y|z"}', 'c!="p, q}"'],
    ],
)
def test_braced_comma_and_list_forms_agree(spec: str | list[str] | tuple[str, ...]) -> None:
    assert parse_matchers(spec) == EXPECTED_SET


@pytest.mark.parametrize("spec", ["", "   ", "{}", "{ }", [], ["", "{}"]])
def test_empty_sets(spec: str | list[str]) -> None:
    assert parse_matchers(spec) == ()


def test_escaped_quote_does_not_end_a_value_before_a_comma() -> None:
    found = parse_matchers('{q="say \\"a, b\\"", r="}"}')
    assert found == (Matcher("q", MatchOp.EQ, 'say "a, b"'), Matcher("r", MatchOp.EQ, "}"))


# --- parse errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('job=~"a("', "invalid regex 'a(' in matcher 'job=~\"a(\"': missing ): a("),
        ("job=~*", "invalid regex '*' in matcher 'job=~*': no argument for repetition operator"),
        ('{a="x", job!~"[z-a]"}', "invalid regex '[z-a]' in matcher 'job!~\"[z-a]\"'"),
        ("foo==bar", "unknown operator '==' in matcher 'foo==bar'"),
        ("foo~=bar", "unknown operator '~=' in matcher 'foo~=bar'"),
        ("foo=!bar", "unknown operator '=!' in matcher 'foo=!bar'"),
        ("foo>=5", "unknown operator '>=' in matcher 'foo>=5'"),
        ("foo", "expected an operator ('=', '!=', '=~' or '!~') after label name 'foo'"),
        ("foo bar", "expected an operator ('=', '!=', '=~' or '!~') after label name 'foo'"),
        ('="x"', "missing label name in matcher '=\"x\"'"),
        ('""="x"', 'empty label name in matcher \'""="x"\''),
        ('my.label="x"', "invalid label name 'my.label' in matcher 'my.label=\"x\"'"),
        ('9lives="x"', "invalid label name '9lives'"),
        ('{a="x"', "missing closing '}' in '{a=\"x\"'"),
        ('{a="}"', "missing closing '}' in '{a=\"}\"'"),  # the quoted "}" is text
        ('a="x"}', "unexpected '}' without an opening '{' in 'a=\"x\"}'"),
        ('{a="x"} b', "unexpected text 'b' after '}' in '{a=\"x\"} b'"),
        ('{a="x"}}', "unexpected text '}' after '}'"),
        ("{{a=x}}", "unexpected '{' in '{{a=x}}'"),
        ("a=x{2}", "unexpected '{' in 'a=x{2}'"),
        ('a="x', "unterminated quoted string in 'a=\"x'"),
        ('a="x\\"', "unterminated quoted string in 'a=\"x\\\\\"'"),
        ('"a=x', "unterminated quoted string"),
        ('a="x" y', "unexpected text 'y' after quoted value in matcher 'a=\"x\" y'"),
        ('a=x"y"z', "unquoted value 'x\"y\"z' contains a double quote"),
        (",", "empty matcher (stray comma) in ','"),
        ("{,}", "empty matcher (stray comma) in '{,}'"),
        ('a="x",,b="y"', 'empty matcher (stray comma) in \'a="x",,b="y"\''),
        (',a="x"', "empty matcher (stray comma)"),
    ],
)
def test_parse_errors_name_the_input(spec: str, message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matchers(spec)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("regex", "reason"),
    [
        ("(?=a)a", "invalid perl operator: (?="),
        ("(?!a).", "invalid perl operator: (?!"),
        ("(?<=a)b", "invalid perl operator: (?<="),
        ("(?<!a)b", "invalid perl operator: (?<!"),
        ("(a)\\\\1", "invalid escape sequence: \\1"),
        ("(?P<x>a)(?P=x)", "invalid perl operator: (?P"),
        ("(?>a)", "invalid perl operator: (?>"),
        ("a*+", "bad repetition operator: *+"),
        ("a++", "bad repetition operator: ++"),
        ("(?(1)a|b)", "invalid perl operator: (?("),
        ("a(?#note)", "invalid perl operator: (?#"),
        ("(?x)a b", "invalid perl operator: (?x"),
        ("(?a)\\\\w", "invalid perl operator: (?a"),
    ],
)
def test_python_only_regex_syntax_is_refused(regex: str, reason: str) -> None:
    text = f'job=~"{regex}"'
    with pytest.raises(MatcherError, match=re.escape(f"in matcher {text!r}")) as caught:
        parse_matcher(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "regex",
    ["[(?=]", "(?P<name>a)", "(?i:a)", "(?ms)^a$", "[]a]", "[^]a]", "a+?", "\\\\++"],
)
def test_re2_syntax_that_looks_python_only_is_accepted(regex: str) -> None:
    parse_matcher(f'job=~"{regex}"')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{job="api"}', "a single matcher takes no braces: '{job=\"api\"}'"),
        ('a="x", b="y"', 'expected exactly one matcher in \'a="x", b="y"\', found 2'),
        ("", "expected exactly one matcher in '', found 0"),
    ],
)
def test_parse_matcher_wants_exactly_one(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matcher(text)
    assert message in str(caught.value)


def test_list_items_must_be_strings() -> None:
    with pytest.raises(MatcherError, match="must be a string, not 3"):
        parse_matchers(["a=b", 3])  # type: ignore[list-item]


def test_matcher_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        parse_matcher("a<>b")


# --- the Matcher object -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "text"),
    [
        (Matcher("job", MatchOp.RE, "api|web"), 'job=~"api|web"'),
        (Matcher("job", MatchOp.EQ, 'say "hi"\n\\'), 'job="say \\"hi\\"\\n\\\\"'),
        (Matcher("job", MatchOp.NE, ""), 'job!=""'),
        (Matcher("a:b", MatchOp.NRE, "x"), 'a:b!~"x"'),
        (Matcher("my.label", MatchOp.EQ, "x\ty"), '"my.label"="x\\ty"'),
        (Matcher("🙂 face", MatchOp.EQ, "\x01é"), '"🙂 face"="\\x01é"'),
    ],
)
def test_str_is_canonical_and_parses_back(matcher: Matcher, text: str) -> None:
    assert str(matcher) == text
    assert parse_matcher(text) == matcher


def test_constructor_validates_and_accepts_operator_spelling() -> None:
    assert Matcher("job", "=~", "a") == Matcher("job", MatchOp.RE, "a")  # type: ignore[arg-type]
    with pytest.raises(MatcherError, match="empty label name"):
        Matcher("", MatchOp.EQ, "x")
    expected = "invalid regex 'a(' in matcher 'job=~\"a(\"': missing ): a("
    with pytest.raises(MatcherError, match=re.escape(expected)):
        Matcher("job", MatchOp.RE, "a(")


def test_matchers_are_hashable_values() -> None:
    a, b = parse_matcher('job=~"a|b"'), Matcher("job", MatchOp.RE, "a|b")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, Matcher("job", MatchOp.NRE, "a|b")}) == 2
    assert "_regex" not in repr(a)
    duplicate = copy.deepcopy(a)
    assert duplicate == a
    assert duplicate.matches({"job": "b"})


def test_matching_does_not_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    matcher = parse_matcher('job=~"api-\\\\d+"')

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("compiled while matching")

    monkeypatch.setattr(re, "compile", refuse)
    assert matcher.matches({"job": "api-12"})
    assert not matcher.matches({"job": "api-x"})


# --- properties -------------------------------------------------------------------------

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]*", fullmatch=True)


@given(name=names, value=st.text(), other=st.text())
def test_quoted_equality_matches_exactly_that_value(name: str, value: str, other: str) -> None:
    matcher = parse_matcher(f'{name}="{om_escape(value)}"')
    assert matcher.value == value
    assert matcher.matches({name: value})
    assert matcher.matches({name: other}) is (other == value)
    assert matcher.matches({}) is (value == "")


@given(value=st.text(), other=st.text(), suffix=st.text(min_size=1))
def test_escaped_regex_agrees_with_equality(value: str, other: str, suffix: str) -> None:
    equal = parse_matcher(f'v="{om_escape(value)}"')
    regex = parse_matcher(f'v=~"{om_escape(re.escape(value))}"')
    for candidate in (value, other, value + suffix, suffix + value, ""):
        assert regex.matches({"v": candidate}) is equal.matches({"v": candidate})


@given(
    name=st.text(min_size=1),
    op=st.sampled_from([MatchOp.EQ, MatchOp.NE, MatchOp.NRE]),
    value=st.text(),
)
def test_str_round_trips(name: str, op: MatchOp, value: str) -> None:
    if op is MatchOp.NRE:
        value = re.escape(value)
    matcher = Matcher(name, op, value)
    assert parse_matcher(str(matcher)) == matcher
    assert parse_matchers("{" + ", ".join([str(matcher)] * 2) + "}") == (matcher, matcher)


@given(st.lists(st.tuples(names, st.text()), max_size=5))
def test_braced_set_equals_list_of_singles(pairs: list[tuple[str, str]]) -> None:
    singles = [f'{name}!="{om_escape(value)}"' for name, value in pairs]
    assert parse_matchers("{" + ",".join(singles) + "}") == parse_matchers(singles)


def test_posix_classes_match_as_in_alertmanager() -> None:
    assert parse_matcher('job=~"[[:alpha:]]+"').matches({"job": "api"})
    assert not parse_matcher('job=~"[^[:digit:]]+"').matches({"job": "a1"})


def test_a_backtracking_regex_takes_linear_time() -> None:
    """(a+)+$ against 'aaa…b' backtracks exponentially in Python's re (seconds at 30
    characters); RE2 answers at once, so a mute or a rule cannot stall the daemon."""
    matcher = parse_matcher('job=~"(a+)+$"')
    started = time.process_time()
    assert not matcher.matches({"job": "a" * 50_000 + "b"})
    assert time.process_time() - started < 0.5
