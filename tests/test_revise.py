"""revise: new versions of one line keep the rest of the poem, its form, its rhyme group and its tone pattern;
--from rewrites the lines after; 词 by 词牌; the command's JSON and bad input."""
import json
import subprocess
import sys

import pytest
import torch

from verse import poetics
from writing import workshop
from config import GenConfig, UserError
from conftest import ROOT
from tests_helpers import shipped_models
from verse.tables import load_tables

GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
SU_SHI = "山下兰芽短浸溪。松间沙路净无泥。萧萧暮雨子规啼。谁道人生无再少，门前流水尚能西。休将白发唱黄鸡。"


@pytest.fixture(scope="module")
def shipped():
    return shipped_models(), load_tables(strict=False)


def revise(shipped, text, line, from_line=False, free=False, num=5, **gen):
    (models, tables), g = shipped, GenConfig(**gen)
    model, itos = models["ci" if g.cipai else "tang"]
    return workshop.revise(model, itos, text, line, g, tables, torch.device("cpu"), num, from_line, free)


def test_a_line_is_rewritten_and_the_rest_kept(shipped):
    found = revise(shipped, GUANQUE, 3)
    assert 1 <= len(found) <= 5 and [r.score for r in found] == sorted(r.score for r in found)
    for r in found:
        lines = poetics.split_lines(r.poem)
        assert lines[0] == "白日依山尽，" and lines[1] == "黄河入海流。" and lines[3] == "更上一层楼。"
        assert lines[2] == r.new and len(r.new) == 6 and r.new.endswith("，") and r.new != "欲穷千里目，"


def test_a_rhyming_line_keeps_the_group_and_the_tone_pattern(shipped):
    pingshui = shipped[1].pingshui
    labels = shipped[1].labels
    for r in revise(shipped, GUANQUE, 4, num=8):
        end = r.new[-2]
        assert pingshui.groups.index("下平声十一尤") in pingshui.groups_of(end, poetics.LEVEL), r.new
        assert end != "流"                                              # line 2's rhyme is not repeated
        table = poetics.table_for(set(r.poem), labels)
        assert poetics.tone_agreement(r.poem, table) == 1.0, r.poem     # the poem keeps 二四六, 粘, 对


def test_from_rewrites_every_line_after(shipped):
    for r in revise(shipped, GUANQUE, 3, from_line=True, num=3):
        assert r.poem.startswith("白日依山尽，黄河入海流。") and poetics.form_of(r.poem) == (5, 4)
        assert r.new == r.poem[12:]


def test_a_ci_line_keeps_its_bu(shipped):
    cilin = shipped[1].cilin
    for r in revise(shipped, SU_SHI, 2, cipai="浣溪沙", num=4):
        assert r.poem.replace(r.new, "") == SU_SHI.replace("松间沙路净无泥。", "")
        assert len(r.new) == 8 and cilin.common([r.new[-2], "溪", "啼"], [poetics.LEVEL] * 3), r.new


def test_bad_requests(shipped):
    with pytest.raises(UserError, match="has 4 lines"):
        revise(shipped, GUANQUE, 5)
    with pytest.raises(UserError, match="not a regular poem"):
        revise(shipped, "白日依山尽，黄河入海流，千里。", 1)
    assert len(revise(shipped, "白日依山尽，黄河入海流，千里。", 3, free=True, num=2)) >= 1
    with pytest.raises(UserError, match="pattern"):
        revise(shipped, GUANQUE, 1, cipai="浣溪沙")


def test_the_command_json_and_exit_codes():
    r = subprocess.run([sys.executable, "main.py", "revise", GUANQUE, "--line", "2", "--num", "2", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert len(found) == 2 and all(set(c) >= {"poem", "score"} for c in found)
    for args in (["--line", "9"], ["--line", "1", "--from", "2"], [], ["--line", "1", "--num", "0"]):
        r = subprocess.run([sys.executable, "main.py", "revise", GUANQUE, *args], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)


def test_token_nll_of_a_padded_batch_is_each_poems_own(shipped):
    """The scores revise ranks by: texts of different lengths read together, each the NLL the model gives
    its own `<bos> text <eos>` read alone (log-softmax of its logits at each target, computed here)."""
    from writing import decoding
    import dataUtil
    (models, _), cpu = shipped, torch.device("cpu")
    model, itos = models["tang"]
    texts = [GUANQUE, "春眠不觉晓，处处闻啼鸟。", GUANQUE + "床前明月光，疑是地上霜。"]
    got = decoding.token_nll(model, itos, texts, cpu)
    stoi = {w: i for i, w in enumerate(itos)}
    for text, nll in zip(texts, got):
        ids = torch.tensor([stoi[dataUtil.BOS], *(stoi[c] for c in text), stoi[dataUtil.EOS]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids[:-1, None])[0][:, 0].float(), -1)
        want = -logp[torch.arange(len(ids) - 1), ids[1:]]
        assert len(nll) == len(text) + 1 and torch.allclose(torch.from_numpy(nll), want, atol=1e-4)
