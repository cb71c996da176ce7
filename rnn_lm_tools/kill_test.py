"""rnn-lm-kill-test: training killed with SIGKILL at random moments resumes exactly.

    rnn-lm-kill-test --data_dir=../shared/data/ptb --work_dir=/tmp/kill --trials=20

Runs ``rnn-lm-train`` once uninterrupted (the reference), then --trials times
the same command in a fresh model directory, killed with SIGKILL at a moment
drawn uniformly over the time the reference run spent training (from its first
step to its last; a checkpoint is written after every step, so many kills land
inside a checkpoint write), and resumed by running the same command again to
the end.  Each trial passes when the resumed
run loaded only a complete checkpoint and every per-step loss of both parts
(logged to TensorBoard at every step) equals the reference run's, bit for bit.

The model is ptb_small's (LSTM 2x200, SGD, batch 20 x 20 steps) with
--deterministic; extra train flags can be given with --train_flags.
"""

import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

from absl import flags

from rnn_lm.bin import common
from rnn_lm.errors import RnnLmError
from rnn_lm_tools import timing

FLAGS = flags.FLAGS
STEP_LINE = re.compile(r"first training step|epoch \d+ step \d+ \(")

flags.DEFINE_string("data_dir", None, "Corpus folder (train.txt, valid.txt, test.txt), e.g. PTB.", required=True)
flags.DEFINE_string("work_dir", None, "Where the model directories of the runs go (emptied first).", required=True)
flags.DEFINE_integer("trials", 20, "Killed and resumed runs.")
flags.DEFINE_integer("steps", 60, "Training steps of each run.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments.")
flags.DEFINE_list("train_flags", ["--preset=ptb_small"], "Flags of every rnn-lm-train run (besides the ones "
                  "the test sets: --max_steps, --deterministic, checkpoints and losses at every step).")
flags.DEFINE_string("json_out", "", "Also write the trials here.")


def train_command(model_dir):
    return [sys.executable, "-m", "rnn_lm.bin.train", f"--data_dir={FLAGS.data_dir}", f"--model_dir={model_dir}",
            *FLAGS.train_flags, f"--max_steps={FLAGS.steps}", "--epochs=1", "--deterministic",
            "--save_every_steps=1", "--log_every_steps=1", "--eval_batch_size=64", "--sample_tokens=0",
            "--noexport"]


def event_files(model_dir):
    log_dir = os.path.join(model_dir, "logs", "train")
    return {os.path.join(log_dir, n) for n in os.listdir(log_dir)} if os.path.isdir(log_dir) else set()


def logged_losses(files):
    """{step: [every loss logged for that step]} in the TensorBoard event files ``files``.

    A killed run may leave a truncated last record: the file is read up to it.
    """
    import tensorflow as tf
    losses = {}
    for path in sorted(files):
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag == "loss":
                        losses.setdefault(event.step, []).append(float(tf.make_ndarray(value.tensor)))
        except tf.errors.DataLossError:
            pass
    return losses


def kill_moment(model_dir):
    """Where the kill landed: during a checkpoint write, between writes, or before the first one."""
    checkpoints = os.path.join(model_dir, "checkpoints")
    names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
    if any("_temp" in n or ".tmp" in n for n in names):
        return "during a checkpoint write"
    return "between checkpoint writes" if "checkpoint" in names else "before the first checkpoint"


def main(argv):
    if FLAGS.trials < 1 or FLAGS.steps < 2:
        raise RnnLmError("--trials must be >= 1 and --steps >= 2")
    if not os.path.isdir(FLAGS.data_dir):
        raise RnnLmError(f"--data_dir {FLAGS.data_dir}: no such directory")
    shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
    os.makedirs(FLAGS.work_dir)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    reference_dir = os.path.join(FLAGS.work_dir, "reference")
    returncode, lines, wall = timing.run_timed(train_command(reference_dir), env)
    if returncode:
        raise RnnLmError("the reference run failed: " + (lines[-1][1].strip() if lines else "?"))
    reference = {step: values[-1] for step, values in logged_losses(event_files(reference_dir)).items()}
    if sorted(reference) != list(range(1, FLAGS.steps + 1)):
        raise RnnLmError(f"the reference run logged losses for {len(reference)} of {FLAGS.steps} steps")
    # The span of the training steps, from when their log lines arrived.
    step_times = [secs for secs, line in lines if STEP_LINE.search(line)]
    if not step_times:
        raise RnnLmError("the reference run logged no training step")
    first, last = max(0.0, min(step_times) - 0.5), max(step_times)
    print(f"reference run: {FLAGS.steps} steps in {wall:.0f} s, training from {first:.1f} s to {last:.1f} s")

    rng = random.Random(FLAGS.seed)
    trials = []
    for trial in range(FLAGS.trials):
        model_dir = os.path.join(FLAGS.work_dir, f"trial_{trial:02d}")
        delay = rng.uniform(first, last)
        proc = subprocess.Popen(train_command(model_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        time.sleep(delay)
        finished_first = proc.poll() is not None
        proc.kill()  # SIGKILL
        proc.wait()
        moment = "after the run had ended" if finished_first else kill_moment(model_dir)
        killed_files = event_files(model_dir)
        resumed = subprocess.run(train_command(model_dir), capture_output=True, text=True, env=env)
        loaded = next((line.split("resumed from ")[1].split()[0] for line in resumed.stderr.splitlines()
                       if "resumed from " in line), "")
        start_step = int(loaded.rsplit("-", 1)[1]) if loaded else 0
        # The killed part's logged losses (as far as they reached the disk) and the resumed run's,
        # which must cover every step after the checkpoint it loaded.
        killed = logged_losses(killed_files)
        after = logged_losses(event_files(model_dir) - killed_files)
        mismatched = sorted(step for part in (killed, after) for step, values in part.items()
                            if any(v != reference.get(step) for v in values))
        missing = sorted(set(range(start_step + 1, FLAGS.steps + 1)) - set(after))
        ok = resumed.returncode == 0 and not mismatched and not missing
        trials.append({"trial": trial, "kill_after_s": round(delay, 2), "moment": moment,
                       "resumed_from": os.path.basename(loaded), "resume_exit_code": resumed.returncode,
                       "losses_equal": not mismatched and not missing, "ok": ok})
        print(f"trial {trial:2d}: killed after {delay:5.1f} s {moment:28s} resumed from "
              f"{os.path.basename(loaded) or '(start)':9s} exit {resumed.returncode}, per-step losses "
              + ("equal to the reference" if ok else f"DIFFER at steps {mismatched[:5]} missing {missing[:5]}"))
        shutil.rmtree(model_dir, ignore_errors=True)
    passed = sum(t["ok"] for t in trials)
    by_moment = collections.Counter(t["moment"] for t in trials)
    print(f"{passed} of {len(trials)} killed runs resumed with every per-step loss equal to the uninterrupted "
          f"run's; kills: " + ", ".join(f"{n} {m}" for m, n in by_moment.items()))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w", encoding="utf-8") as f:
            json.dump({"reference_wall_s": wall, "trials": trials}, f, indent=1)
    if passed != len(trials):
        raise RnnLmError(f"{len(trials) - passed} trials did not resume exactly")


def run():
    common.run_main(main)


if __name__ == "__main__":
    run()
