"""Measurement harnesses for rnn_lm (benchmark, kill test, large corpus): they import rnn_lm as a user would."""
