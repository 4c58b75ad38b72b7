"""One REALM pre-training step, ours (pmapped) vs transformers' PyTorch REALM port.

Both sides hold the same weights (the port's random init, copied across by our converter), see the
same real-text batch, run forward + backward + clip + AdamW with dropout on, after warm-up.
"""

from __future__ import annotations

import json

import jax
import numpy as np

from realm_jax.assets import MINI_PASSAGES, minilm_dir
from realm_jax.benchmarks.common import format_table, json_line, machine_info, time_interleaved
from realm_jax.convert.hf_realm import params_from_hf_realm, realm_config_from_hf
from realm_jax.data.tokenization import Tokenizer
from realm_jax.models.bert import BertConfig
from realm_jax.models.realm import RealmPretrainModel
from realm_jax.run.state import TrainState, bert_adamw
from realm_jax.train import realm
from realm_jax.utils import devices


def _pad(ids: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
    ids = ids[:length]
    out = np.zeros(length, np.int32)
    out[: len(ids)] = ids
    return out, (out != 0).astype(np.int32)


def real_text_batch(
    batch: int, k: int, query_len: int, cand_len: int, num_masks: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """A REALM batch of real passages: masked queries, K candidate blocks, joint inputs."""
    tok = Tokenizer()
    with open(MINI_PASSAGES, encoding="utf-8") as f:
        texts = [json.loads(next(f))["text"] for _ in range(batch * (k + 1))]
    pieces = tok.tokenize(texts)
    rng = np.random.default_rng(seed)
    q_body = query_len - 2
    out: dict[str, list] = {key: [] for key in (
        "query_ids", "query_mask", "cand_ids", "cand_mask", "joint_ids", "joint_mask",
        "joint_type_ids", "mlm_positions", "mlm_targets")}
    for b in range(batch):
        query = pieces[b][:q_body]
        positions = np.sort(rng.choice(np.arange(1, len(query) + 1), num_masks, replace=False))
        targets = np.array([query[p - 1] for p in positions], np.int32)
        masked = [tok.mask_id if i + 1 in positions else t for i, t in enumerate(query)]
        q_ids, q_mask = _pad([tok.cls_id, *masked, tok.sep_id], query_len)
        c_rows, j_rows = [], []
        for j in range(k):
            body = pieces[batch + b * k + j]
            c_rows.append(_pad([tok.cls_id, *body[: cand_len - 2], tok.sep_id], cand_len))
            joint = [tok.cls_id, *masked, tok.sep_id, *body[: cand_len - 1], tok.sep_id]
            j_rows.append(_pad(joint, query_len + cand_len) + (len(masked) + 2,))
        out["query_ids"].append(q_ids)
        out["query_mask"].append(q_mask)
        out["cand_ids"].append([c[0] for c in c_rows])
        out["cand_mask"].append([c[1] for c in c_rows])
        out["joint_ids"].append([j[0] for j in j_rows])
        out["joint_mask"].append([j[1] for j in j_rows])
        types = [(np.arange(query_len + cand_len) >= j[2]) * j[1] for j in j_rows]
        out["joint_type_ids"].append(types)
        out["mlm_positions"].append(positions.astype(np.int32))
        out["mlm_targets"].append(targets)
    arrays = {key: np.asarray(v, np.int32) for key, v in out.items()}
    arrays["cand_type_ids"] = np.zeros_like(arrays["cand_ids"])
    arrays["cand_valid"] = np.ones((batch, k), bool)
    arrays["mlm_mask"] = np.ones((batch, num_masks), bool)
    return arrays


def torch_port(hf_cfg, seed: int = 0):
    """The port's RealmScorer + RealmKnowledgeAugEncoder (shared towers), random init."""
    import torch
    from transformers.models.deprecated.realm import modeling_realm

    torch.manual_seed(seed)
    scorer = modeling_realm.RealmScorer(hf_cfg).train()
    encoder = modeling_realm.RealmKnowledgeAugEncoder(hf_cfg).train()
    return scorer, encoder


def torch_step_fn(scorer, encoder, batch: dict[str, np.ndarray], lr: float, threads: int):
    """A zero-argument callable: forward, loss, backward, clip, AdamW on the port."""
    import torch

    torch.set_num_threads(threads)
    t = {k: torch.tensor(v).long() for k, v in batch.items() if v.dtype != bool}
    b, k, lj = batch["joint_ids"].shape
    labels = torch.full((b, lj), -100, dtype=torch.long)  # the port tiles labels over K itself
    labels[torch.arange(b)[:, None], t["mlm_positions"]] = t["mlm_targets"]
    params = list(scorer.parameters()) + list(encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, eps=1e-6, weight_decay=0.01)

    def step():
        relevance = scorer(
            t["query_ids"], t["query_mask"],
            candidate_input_ids=t["cand_ids"], candidate_attention_mask=t["cand_mask"],
            candidate_token_type_ids=t["cand_type_ids"],
        ).relevance_score
        loss = encoder(
            t["joint_ids"].view(b * k, lj), t["joint_mask"].view(b * k, lj),
            t["joint_type_ids"].view(b * k, lj), relevance_score=relevance,
            labels=labels, mlm_mask=labels != -100,
        ).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss)

    return step


def jax_step_fn(scorer, encoder, cfg, batch: dict[str, np.ndarray], lr: float):
    """A zero-argument callable running our pmapped REALM train step (one device) to completion."""
    sd = lambda m: {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    params = {"params": {
        "retriever": params_from_hf_realm(sd(scorer), cfg, "scorer")["params"],
        "encoder": params_from_hf_realm(sd(encoder), cfg, "encoder")["params"],
    }}
    state = devices.replicate(TrainState.create(params, bert_adamw(lr, 1000, 0)))
    step = realm.train_step(RealmPretrainModel(cfg), donate=True)
    sharded = devices.shard(batch)
    rng = devices.replicate(jax.random.PRNGKey(0))
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], sharded, rng)
        return float(jax.block_until_ready(metrics["loss"])[0])

    return run


def train_step_main(
    batch: int, k: int, query_len: int, cand_len: int, num_masks: int, iters: int, threads: int
) -> dict:
    """Times both steps, prints a table and the JSON line; returns it."""
    from transformers.models.deprecated.realm import configuration_realm

    bert = BertConfig.from_json_file(f"{minilm_dir()}/config.json")
    hf_cfg = configuration_realm.RealmConfig(
        vocab_size=bert.vocab_size, hidden_size=bert.hidden_size,
        num_hidden_layers=bert.num_hidden_layers, num_attention_heads=bert.num_attention_heads,
        intermediate_size=bert.intermediate_size, hidden_act=bert.hidden_act,
        retriever_proj_size=128, num_candidates=k,
    )
    cfg = realm_config_from_hf(hf_cfg.to_dict())
    data = real_text_batch(batch, k, query_len, cand_len, num_masks)
    scorer, encoder = torch_port(hf_cfg)
    print(f"machine: {machine_info()}")
    jax_run = jax_step_fn(scorer, encoder, cfg, data, 1e-5)
    torch_run = torch_step_fn(scorer, encoder, data, 1e-5, threads)
    times = time_interleaved({"jax": jax_run, "torch": torch_run}, iters, warmup=1)
    jax_s, torch_s = times["jax"], times["torch"]
    shape = (
        f"MiniLM-L6 size (6 x 384), batch {batch}, K {k}, query {query_len}, "
        f"candidate {cand_len}, joint {query_len + cand_len}, {num_masks} masks"
    )
    print(f"\nREALM pre-training step (forward + backward + clip + AdamW), {shape}")
    rows = [["jax REALM step (pmap, 1 CPU device)", jax_s, 1 / jax_s, torch_s / jax_s],
            [f"torch port (RealmScorer + RealmKnowledgeAugEncoder, {threads} threads)",
             torch_s, 1 / torch_s, 1.0]]
    print(format_table(["implementation", "s/step", "steps/s", "x torch"], rows))
    result = {"benchmark": "step_speed", "jax_steps_per_s": 1 / jax_s,
              "torch_steps_per_s": 1 / torch_s, "ratio": torch_s / jax_s}
    print(json_line(result))
    return result
