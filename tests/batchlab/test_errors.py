"""The unified error: strict JSON, printable anywhere, echoed values cut (issue 14)."""

from __future__ import annotations

import json

import pytest
from batchlab.errors import MAX_ECHO_CHARS, KitError, printable


def strict(text: str) -> dict:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not strict JSON"))


class TestToJson:
    @pytest.mark.parametrize("value, shown", [(float("nan"), "NaN"), (float("inf"), "Infinity"),
                                              (float("-inf"), "-Infinity"), (1.5, 1.5), (7, 7), (None, None)])
    def test_non_finite_numbers_are_shown_as_strings(self, value: object, shown: object) -> None:
        assert strict(KitError("m", details={"v": value}).to_json())["error"]["details"]["v"] == shown

    def test_long_strings_are_cut_and_say_how_much(self) -> None:
        details = strict(KitError("m", details={"batch_id": "x" * 1_000_000}).to_json())["error"]["details"]
        assert details["batch_id"].startswith("x" * MAX_ECHO_CHARS)
        assert details["batch_id"].endswith(f"[{1_000_000 - MAX_ECHO_CHARS} more characters]")

    def test_the_message_is_cut_too(self) -> None:
        assert len(KitError("y" * 100_000).to_json()) < 2000

    def test_lone_surrogates_are_escaped_so_the_error_prints_as_utf8(self) -> None:
        text = KitError("bad \ud800", details={"\udc80key": ["\ud800"]}).to_json()
        text.encode("utf-8")
        error = strict(text)["error"]
        assert error["message"] == "bad \\ud800" and error["details"] == {"\\udc80key": ["\\ud800"]}

    def test_integers_beyond_the_print_limit_are_described(self) -> None:
        shown = strict(KitError("m", details={"n": 10**5000}).to_json())["error"]["details"]["n"]
        assert shown == "<an integer of about 5001 digits>"

    def test_deep_and_wide_structures_are_cut(self) -> None:
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        wide = {str(i): i for i in range(1000)}
        error = strict(KitError("m", details={"deep": deep, "wide": wide}).to_json())["error"]
        assert len(error["details"]["wide"]) == 51
        assert "nested deeper" in json.dumps(error["details"]["deep"])

    def test_to_dict_keeps_the_values_as_given(self) -> None:
        nan = float("nan")
        assert KitError("m", details={"v": nan}).to_dict()["error"]["details"]["v"] is nan

    def test_printable_leaves_ordinary_values_alone(self) -> None:
        value = {"path": "a.json", "line": 3, "ok": True, "fields": ["id", "content"]}
        assert printable(value) == value
