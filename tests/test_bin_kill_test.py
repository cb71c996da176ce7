"""rnn-lm-kill-test end to end: rnn-lm-train runs SIGKILLed at random moments and resumed log every loss
equal to an uninterrupted reference run's, as its JSON and its summary line say."""

import json

from tests.helpers import TINY, run, write_corpus


def test_kill_test_binary_resumes_killed_runs_exactly(tmp_path):
    """A run killed at a random moment (SIGKILL) and resumed: every logged loss equals the reference's."""
    data = write_corpus(tmp_path / "data", (40, 3, 3))
    out = tmp_path / "trials.json"
    proc = run("rnn_lm_tools.kill_test", f"--data_dir={data}", f"--work_dir={tmp_path / 'work'}", "--trials=1",
               "--steps=8", "--train_flags=" + ",".join(TINY), f"--json_out={out}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = json.loads(out.read_text())["trials"]
    assert len(trials) == 1 and all(t["ok"] and t["losses_equal"] for t in trials)
    assert "1 of 1 killed runs resumed" in proc.stdout
