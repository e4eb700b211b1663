"""BioASQ factoid QA adapter (BioBERT's setup): train on a SQuAD-layout file, score each 6b
test batch against its golden file; no dev split unless `config.qa.dev_file`.
"""
from __future__ import annotations

import collections
import json
import pathlib
from typing import Any
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from biobert_jax import fs
from biobert_jax.metrics import bioasq
from biobert_jax.metrics import qa_decoding
from biobert_jax.models import BertForQuestionAnswering
from data_pipeline.tasks import qa as qa_data
from biobert_jax.tasks.base import SplitData, TaskData, default_data_dir, masked_cross_entropy


def _data_dir(config: ml_collections.ConfigDict) -> pathlib.Path:
    return fs.path(default_data_dir(config))


def _cap_questions(examples: list[qa_data.QAExample], limit: int
                   ) -> list[qa_data.QAExample]:
  """The examples of the first `limit` distinct questions (0 = all)."""
  if not limit:
    return examples
  kept: dict[str, None] = {}
  for e in examples:
    if e.question_id not in kept and len(kept) < limit:
      kept[e.question_id] = None
  return [e for e in examples if e.question_id in kept]


def golden_from_answers(examples: Sequence[qa_data.QAExample]) -> dict[str, list[list[str]]]:
  """Golden entities from a SQuAD file's own answers: one entity per distinct text."""
  golden: dict[str, dict[str, None]] = collections.defaultdict(dict)
  for e in examples:
    for text, _ in e.answers:
      golden[e.question_id].setdefault(text, None)
  return {qid: [[t] for t in texts] for qid, texts in golden.items()}


class QuestionAnsweringTask:
  """The `Task` for extractive (BioASQ factoid) question answering."""

  name = "qa"
  primary_metric = "mrr"

  def extra_tokens(self, config: ml_collections.ConfigDict) -> list[str]:
    return []

  def _split(self, name: str, examples: list[qa_data.QAExample], tokenizer: Any,
             config: ml_collections.ConfigDict, golden: dict | None) -> SplitData:
    features, extra = qa_data.featurize_qa(examples, tokenizer, config.max_seq_length,
                                           config.doc_stride, config.qa.max_query_length)
    extra.update(name=name, golden=golden)
    return SplitData(features, examples, extra)

  def load(self, config: ml_collections.ConfigDict, tokenizer: Any) -> TaskData:
    d = _data_dir(config)
    q = config.qa
    out: dict[str, Any] = {}
    train = qa_data.read_squad(d / q.train_file, require_answers=True)
    out["train"] = self._split("train", _cap_questions(train, config.max_train_examples),
                               tokenizer, config, None)
    if q.get("dev_file"):
      dev = _cap_questions(qa_data.read_squad(d / q.dev_file, require_answers=True),
                           config.max_eval_examples)
      out["dev"] = self._split("dev", dev, tokenizer, config, golden_from_answers(dev))
    if len(q.test_files) != len(q.golden_files):
      raise ValueError(f"qa.test_files ({len(q.test_files)}) and qa.golden_files "
                       f"({len(q.golden_files)}) must pair up")
    batches = []
    for test_file, golden_file in zip(q.test_files, q.golden_files):
      examples = _cap_questions(qa_data.read_squad(d / test_file), config.max_eval_examples)
      golden = bioasq.read_golden_factoids(d / golden_file)
      if config.max_eval_examples:
        kept = {e.question_id for e in examples}
        golden = {qid: g for qid, g in golden.items() if qid in kept}
      batches.append(self._split(pathlib.Path(test_file).stem, examples, tokenizer, config,
                                 golden))
    if batches:
      out["test"] = batches
    return TaskData(out, [])

  def make_model(self, bert_config: Any, config: ml_collections.ConfigDict,
                 labels: list[str], dtype: Any):
    del config, labels
    return BertForQuestionAnswering(bert_config, dtype=dtype)

  def model_inputs(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}

  def loss(self, outputs: Any, batch: dict[str, jax.Array]):
    start_logits, end_logits = outputs
    # Padding positions can never be answers: mask them out of the softmax.
    mask = batch["attention_mask"] > 0
    start_logits = jnp.where(mask, start_logits, -1e9)
    end_logits = jnp.where(mask, end_logits, -1e9)
    weights = batch.get("weights", jnp.ones(batch["start_positions"].shape, jnp.float32))
    start_loss, _ = masked_cross_entropy(start_logits, batch["start_positions"], weights)
    end_loss, _ = masked_cross_entropy(end_logits, batch["end_positions"], weights)
    loss = (start_loss + end_loss) / 2  # BERT's run_squad averages the two
    return loss, {"loss": loss, "start_loss": start_loss, "end_loss": end_loss}

  def predict_outputs(self, outputs: Any) -> dict[str, jax.Array]:
    start_logits, end_logits = outputs
    return {"start_logits": start_logits, "end_logits": end_logits}

  def nbest_per_example(self, outputs: dict[str, np.ndarray], split: SplitData,
                        config: ml_collections.ConfigDict) -> list[list[dict]]:
    """Decoded n-best answers of every example (merged over its windows)."""
    windows: dict[int, list[dict]] = collections.defaultdict(list)
    for f, index in enumerate(split.features["example_index"]):
      windows[int(index)].append({
          "start_logits": outputs["start_logits"][f], "end_logits": outputs["end_logits"][f],
          "token_offsets": split.extra["token_offsets"][f],
          "max_context": split.extra["max_context"][f]})
    return [qa_decoding.decode_example(e.context, windows[i], config.qa.n_best_size,
                                       config.qa.max_answer_length)
            for i, e in enumerate(split.examples)]

  def decode(self, outputs: dict[str, np.ndarray], split: SplitData,
             config: ml_collections.ConfigDict) -> dict[str, list[tuple[str, float]]]:
    """{BioASQ question id: [(answer, weight)] top-k}, pooled over its contexts."""
    per_question: dict[str, list] = collections.defaultdict(list)
    for example, nbest in zip(split.examples, self.nbest_per_example(outputs, split, config)):
      per_question[example.question_id].append(nbest)
    return {qid: qa_decoding.rank_question_answers(lists, config.qa.merge, config.qa.top_k)
            for qid, lists in per_question.items()}

  def evaluate(self, decoded: dict[str, list[tuple[str, float]]], split: SplitData,
               config: ml_collections.ConfigDict) -> dict:
    ranked = decoded
    golden = split.extra.get("golden")
    if golden is None:
      golden = golden_from_answers(split.examples)
    predictions = {qid: [a for a, _ in answers] for qid, answers in ranked.items()}
    result = bioasq.factoid_scores(golden, predictions, config.qa.top_k)
    result["batch"] = split.extra.get("name", "")
    return result

  def write_predictions(self, decoded: dict[str, list[tuple[str, float]]], split: SplitData,
                        out_path_prefix: str) -> list[str]:
    """<prefix>.json in BioASQ submission format (what the official evaluator reads)
    and <prefix>_nbest.json with the weighted answers."""
    del split
    ranked = decoded
    submission = {"questions": [
        {"id": qid, "type": "factoid", "ideal_answer": "Dummy",
         "exact_answer": [[answer] for answer, _ in answers]}
        for qid, answers in ranked.items()]}
    paths = [f"{out_path_prefix}.json", f"{out_path_prefix}_nbest.json"]
    with fs.open(paths[0], "w", encoding="utf-8") as f:
      json.dump(submission, f, indent=2)
    with fs.open(paths[1], "w", encoding="utf-8") as f:
      json.dump({qid: [{"text": a, "weight": w} for a, w in answers]
                 for qid, answers in ranked.items()}, f, indent=2)
    return paths

  def export_info(self, config: ml_collections.ConfigDict, labels: list[str]) -> dict:
    del labels
    return {"max_seq_length": config.max_seq_length, "doc_stride": config.doc_stride,
            "max_query_length": config.qa.max_query_length,
            "n_best_size": config.qa.n_best_size,
            "max_answer_length": config.qa.max_answer_length}


TASK = QuestionAnsweringTask()

__all__ = ["TASK", "QuestionAnsweringTask", "golden_from_answers"]
