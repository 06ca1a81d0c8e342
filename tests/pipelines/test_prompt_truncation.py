"""A prompt longer than the text encoder reads: one short line saying how many tokens were dropped, once."""

from __future__ import annotations

import logging

import torch

from fantasyid.pipelines.pipeline_fantasyid import FantasyIDPipeline
from fantasyid.pipelines.tiny import build_tiny_components


def test_a_5000_word_prompt_gives_one_short_note(capfd, caplog):
    components = build_tiny_components(with_identity=False)
    pipe = FantasyIDPipeline(**components)
    length = components["transformer"].config.max_text_seq_length
    prompt = " ".join(["smiling"] * 5000)
    expected = len(pipe.tokenizer(prompt).input_ids) - length  # by hand: the tokens past the limit
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # generate calls it per video, training per step
            states = pipe._get_t5_prompt_embeds([prompt, "a woman smiles"], max_sequence_length=length,
                                                device=torch.device("cpu"))
    assert states.shape[:2] == (2, length)
    out, err = capfd.readouterr()
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and f"{expected} tokens of a {expected + length}-token prompt were dropped" in logged[0]
    assert len(out) + len(err) + sum(map(len, logged)) < 1000  # not ~50 KB of dropped text
