"""render_query / template_variables: only `{{ name }}` placeholders change, PromQL braces never do."""

from __future__ import annotations

import pytest

from hemostat.signals import TEMPLATE_VARIABLES, TemplateError, render_query, template_variables

VARS = {
    "namespace": "shop",
    "deployment": "checkout",
    "policy": "checkout-errors",
    "signal": "error-rate",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("up", "up"),
        ('up{namespace="{{ namespace }}"}', 'up{namespace="shop"}'),
        ('up{namespace="{{namespace}}"}', 'up{namespace="shop"}'),
        ('up{namespace="{{   namespace\t}}"}', 'up{namespace="shop"}'),
        ('up{namespace="{{\nnamespace\n}}"}', 'up{namespace="shop"}'),
        (
            'sum(rate(http_requests_total{namespace="{{ namespace }}",deployment="{{ deployment }}",'
            'code=~"5.."}[5m])) / sum(rate(http_requests_total{namespace="{{ namespace }}"}[5m]))',
            'sum(rate(http_requests_total{namespace="shop",deployment="checkout",'
            'code=~"5.."}[5m])) / sum(rate(http_requests_total{namespace="shop"}[5m]))',
        ),
        ('x{pod=~"{{ deployment }}-.*"}', 'x{pod=~"checkout-.*"}'),
        ('x{policy="{{ policy }}", signal="{{ signal }}"}', 'x{policy="checkout-errors", signal="error-rate"}'),
        # Braces that are not a valid placeholder are plain text.
        ('{__name__=~"up|down"}', '{__name__=~"up|down"}'),
        ("{{}}", "{{}}"),
        ("{{ 9lives }}", "{{ 9lives }}"),
        ("{{ Namespace }}", "{{ Namespace }}"),
        ("{{ name space }}", "{{ name space }}"),
        ('label_replace(up, "x", "$1", "job", "(.*)")', 'label_replace(up, "x", "$1", "job", "(.*)")'),
        # A label matcher wrapped around a placeholder: outer braces survive.
        ("up{{{ namespace }}}", "up{shop}"),
    ],
)
def test_render_query(template: str, expected: str) -> None:
    assert render_query(template, VARS) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("up", set()),
        ('up{job="x"}', set()),
        ("{{ namespace }}", {"namespace"}),
        ("{{namespace}} {{ namespace }} {{  deployment}}", {"namespace", "deployment"}),
        ("{{ a_1 }}{{ _b }}", {"a_1", "_b"}),
        ("{{ Bad }} {{ 1x }} {{}}", set()),
        ("{{ unknown_thing }}", {"unknown_thing"}),
    ],
)
def test_template_variables(template: str, expected: set[str]) -> None:
    assert template_variables(template) == expected


def test_repeated_placeholder_is_replaced_everywhere() -> None:
    rendered = render_query("{{ deployment }}/{{deployment}}/{{ deployment }}", {"deployment": "d"})
    assert rendered == "d/d/d"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (r"a\1b", r'x{v="a\1b"}'),
        (r"\g<0>", r'x{v="\g<0>"}'),
        ("{{ namespace }}", 'x{v="{{ namespace }}"}'),  # values are not rendered again
        ("", 'x{v=""}'),
        ('we"ird', 'x{v="we"ird"}'),  # verbatim: no escaping
    ],
)
def test_values_are_inserted_verbatim(value: str, expected: str) -> None:
    assert render_query('x{v="{{ v }}"}', {"v": value, "namespace": "shop"}) == expected


def test_unknown_placeholder_names_it_and_lists_known_ones() -> None:
    with pytest.raises(TemplateError) as err:
        render_query('up{ns="{{ namespcae }}"}', VARS)
    message = str(err.value)
    assert "{{ namespcae }}" in message
    for name in VARS:
        assert name in message


def test_several_unknown_placeholders_are_all_named() -> None:
    with pytest.raises(TemplateError, match=r"placeholders \{\{ a \}\}, \{\{ b \}\}"):
        render_query("{{ b }} {{ a }} {{ namespace }}", {"namespace": "x"})


def test_unknown_placeholder_with_no_variables() -> None:
    with pytest.raises(TemplateError, match=r"\(none\)"):
        render_query("{{ namespace }}", {})


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_operator_variables_are_documented() -> None:
    assert {"namespace", "deployment", "policy", "signal"} == TEMPLATE_VARIABLES
