"""check's 对仗 notes: each couplet of a 律诗 judged (duizhang.py), notes not violations."""
import subprocess
import sys

from conftest import ROOT

DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
          "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")


def check(text):
    return subprocess.run([sys.executable, "main.py", "check", "--no-model", "--json", text], cwd=ROOT,
                          capture_output=True, text=True)


def test_dengao_is_parallel_in_all_four_couplets():
    import json
    r = check(DENGAO)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and [c["verdict"] for c in report["duizhang"]] == ["parallel"] * 4
    assert [c["expected"] for c in report["duizhang"]] == [False, True, True, False]
    assert "对仗: 颔联 parallel" in report["notes"]


def test_a_non_answering_character_is_named_and_is_no_violation():
    import json
    r = check(DENGAO.replace("不尽长江", "不尽地江"))
    report = json.loads(r.stdout)
    middle = report["duizhang"][1]
    assert middle["verdict"] != "parallel" and middle["weakest"] == [3]
    assert any("颔联" in n and "3 (落/地)" in n for n in report["notes"])
    assert not any(v["rule"].startswith("对仗") for v in report["violations"])


def test_a_jueju_has_no_couplet_judgement():
    import json
    report = json.loads(check("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。").stdout)
    assert "duizhang" not in report
