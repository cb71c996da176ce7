"""rnn-lm-generate end to end, in fresh processes, on a model rnn-lm-train wrote (the ``trained``
fixture): a seed reproduces the text; prompts from stdin, as JSON, with top-k/top-p and beam search (best
first); greedy text the same through one graph call, the SavedModel and --interactive; --timing with
prompts from stdin prints every continuation and times the whole batch; a prompt of only unknown words
is one line."""

import json
import re

from tests.helpers import assert_one_line_error, run


def test_generate_is_reproducible_with_a_seed(trained):
    model_dir, _, _ = trained
    args = [f"--model_dir={model_dir}", "--prompt=the cake", "--prompt=", "--seed=3", "--max_tokens=8"]
    first, second = run("generate", *args), run("generate", *args)
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("the cake")
    assert first.stdout == second.stdout


def test_generate_from_stdin_as_json_with_top_k_and_beam(trained):
    model_dir, _, _ = trained
    proc = run("generate", f"--model_dir={model_dir}", "--json", "--top_k=3", "--top_p=0.9", "--max_tokens=6",
               input="the cake\nwhich\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["the cake", "which"]
    beams = run("generate", f"--model_dir={model_dir}", "--prompt=the cake", "--beam_width=3",
                "--num_samples=3", "--json", "--max_tokens=6")
    assert beams.returncode == 0, beams.stderr[-2000:]
    scores = [json.loads(line)["score"] for line in beams.stdout.splitlines()]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_generate_interactive_and_from_the_saved_model(trained):
    model_dir, _, _ = trained
    greedy = ["--temperature=0", "--max_tokens=6"]
    batch = run("generate", f"--model_dir={model_dir}", "--prompt=the cake", *greedy)
    served = run("generate", f"--saved_model={model_dir}/saved_model", "--prompt=the cake", *greedy)
    streamed = run("generate", f"--model_dir={model_dir}", "--interactive", *greedy, input="the cake\n")
    for proc in (batch, served, streamed):
        assert proc.returncode == 0, proc.stderr[-2000:]
    # Three paths (one graph call, the SavedModel, token by token) give the same greedy text.
    assert batch.stdout == served.stdout == streamed.stdout
    assert batch.stdout.startswith("the cake")


TIMING = re.compile(r"(\d+) decoding steps for a batch of (\d+) in [\d.]+ ms: [\d.]+ ms per step")


def test_timing_with_prompts_from_stdin_prints_them_and_times_the_whole_batch(trained):
    """--timing reads stdin once: the continuations are the prompts' (as with --prompt flags), and the
    timed batch holds every prompt's samples (3 prompts x 2 samples), from the checkpoint and the SavedModel.
    (It used to read stdin again for the timing line: a batch of 2, one empty prompt's.)"""
    model_dir, _, _ = trained
    prompts = ["the cake", "which the", "two small dogs"]
    settings = ["--seed=4", "--max_tokens=7", "--num_samples=2"]
    for source in (f"--model_dir={model_dir}", f"--saved_model={model_dir}/saved_model"):
        timed = run("generate", source, *settings, "--timing", input="".join(p + "\n" for p in prompts))
        flagged = run("generate", source, *settings, *[f"--prompt={p}" for p in prompts])
        for proc in (timed, flagged):
            assert proc.returncode == 0, proc.stderr[-2000:]
        lines = timed.stdout.splitlines()
        assert len(lines) == 6, timed.stdout
        assert all(line.startswith(p) for line, p in zip(lines, [p for p in prompts for _ in range(2)])), lines
        assert timed.stdout == flagged.stdout  # the same seed: the same samples, timed or not
        (match,) = [m for m in map(TIMING.fullmatch, timed.stderr.splitlines()) if m]
        steps, batch = map(int, match.groups())
        assert batch == 6, match.group(0)
        assert 1 <= steps <= 7
        assert not any(TIMING.fullmatch(line) for line in flagged.stderr.splitlines())


def test_a_prompt_of_only_unknown_words_is_refused(trained):
    model_dir, _, _ = trained
    assert_one_line_error(run("generate", f"--model_dir={model_dir}", "--prompt=zebra quokka"),
                          "only words outside the vocabulary")
