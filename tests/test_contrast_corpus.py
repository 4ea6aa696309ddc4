"""training/corpus/contrast.py: the ground-truth contrast pairs are valid evaluation pairs of unseen material."""

from __future__ import annotations

import json
from pathlib import Path

from instructaudio_diffusers.evaluation.cases import load_cases
from instructaudio_diffusers.training.demo_corpus import build as make_demo_corpus
from instructaudio_diffusers.training.demo_corpus import contrast, instructions, plan

REPO = Path(__file__).resolve().parent.parent


def test_pairs_differ_in_one_attribute_and_read_held_out_material(tmp_path):
    pools = plan.held_out_sentences(0)
    planned = contrast.plan_contrast_pairs(0, pools, pairs_per_attribute=3)
    assert len(planned) == 2 * 3 * len(contrast.CONTRAST_ATTRIBUTES)
    training_texts = set(pools["en"][0]) | set(pools["zh"][0])
    held_out_templates = {
        template_id
        for language in ("en", "zh")
        for template_id, _ in instructions.iter_template_ids(language, held_out=True)
    }
    rows = []
    for (_, _, render_a, row_a), (_, _, render_b, row_b) in zip(planned[::2], planned[1::2]):
        assert row_a["contrast"]["pair"] == row_b["contrast"]["pair"] and row_a["text"] == row_b["text"]
        assert row_a["instruction"] != row_b["instruction"] and render_a != render_b
        for row in (row_a, row_b):
            assert row["text"] not in training_texts
            assert set(row["instruction_templates"]) <= held_out_templates, row["instruction_templates"]
            rows.append({**row, "path": f"x/{row['id']}.wav", "duration_s": 3.0})
    # The case file the corpus writes passes the harness' pair checks (one attribute differs, same text).
    cases = make_demo_corpus.contrast_cases(rows)
    case_file = tmp_path / "contrast_cases.jsonl"
    case_file.write_text("\n".join(json.dumps(case, ensure_ascii=False) for case in cases) + "\n")
    loaded = load_cases(case_file)
    assert {case.contrast["attribute"] for case in loaded} == set(contrast.CONTRAST_ATTRIBUTES)


def test_contrast_pairs_leave_every_corpus_job_unchanged():
    before = {job.clip_id: job.render_hash for job in plan.plan_corpus(0, 0.01).jobs}
    contrast.plan_contrast_pairs(0, plan.held_out_sentences(0), pairs_per_attribute=2)
    after = {job.clip_id: job.render_hash for job in plan.plan_corpus(0, 0.01).jobs}
    assert before == after and not any(clip_id.startswith("contrast_") for clip_id in after)
