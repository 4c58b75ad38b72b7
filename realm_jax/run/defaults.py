"""Every field a stage's config has, with its default: experiment files override these.

``ict_config()``, ``realm_config()`` and ``openqa_config()`` build complete ``ConfigDict``s in
sections (run, model, init, data, optim, the stage's own section, evals). Experiment configs under
``experiments/configs/`` start from one of them and change what differs, so a field is defined,
typed and explained once. Paths that are unset default to ``None`` placeholders (overridable from
the command line as strings).
"""

from __future__ import annotations

from ml_collections import ConfigDict, config_dict

from realm_jax.assets import MINI_PASSAGES

STAGES = ("ict", "mlm", "realm", "openqa")


def _path() -> config_dict.FieldReference:
    return config_dict.placeholder(str)


def base_config(stage: str) -> ConfigDict:
    """The sections every stage shares: run, model, init, data, optim."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    c = ConfigDict()
    c.stage = stage
    c.seed = 0  # params, data order, masks and dropout all derive from it

    # Run length and cadence (steps count parameter updates).
    c.num_train_steps = 1000
    c.batch_size = 8  # global: a multiple of the number of devices over all processes
    c.log_every_steps = 10
    c.eval_every_steps = 0  # 0: evaluate only at the end
    c.eval_at_start = False
    c.checkpoint_every_steps = 100
    c.keep_checkpoints = 3
    c.progress = True  # tqdm bar (terminal only) and ETA lines in the log
    c.profile_steps = 0  # > 0: a jax.profiler trace of that many steps into the workdir

    # Architecture: the BERT shape and REALM's heads.
    c.model = ConfigDict()
    c.model.bert = "base"  # "base" (BERT-base uncased), "minilm", "tiny", or a dir with config.json
    c.model.num_hidden_layers = config_dict.placeholder(int)  # keep the first n layers
    c.model.dropout = config_dict.placeholder(float)  # hidden and attention dropout override
    # Activation override: "gelu_new" (TF BERT's tanh form) for the released TF checkpoints.
    c.model.hidden_act = config_dict.placeholder(str)
    c.model.proj_size = 128  # retriever embedding size (REALM: 128)
    c.model.share_embedders = True  # one tower for Embed_input and Embed_doc (REALM's embedder)
    c.model.span_hidden_size = 256
    c.model.max_span_width = 10
    c.model.dtype = "float32"  # compute dtype; "bfloat16" on TPU / GPU
    c.model.remat = False  # recompute BERT layers in the backward pass: less memory, more compute

    # Starting weights.
    c.init = ConfigDict()
    c.init.bert = "random"  # "random", "minilm", or an HF BERT checkpoint (dir or file)
    c.init.ict_workdir = _path()  # retriever from an ICT run's latest checkpoint
    c.init.pretrain_workdir = _path()  # retriever and encoder from a REALM run
    # Open-QA only, what init.pretrain_workdir provides (Table 2's mixes): "all", "retriever"
    # (the reader starts from init.bert) or "encoder" (the retriever from init.ict_workdir).
    c.init.pretrain_parts = "all"

    # Knowledge corpus Z, packed into blocks once and cached.
    c.data = ConfigDict()
    c.data.corpus = MINI_PASSAGES  # jsonl {title, text} (ids from "id" when present)
    c.data.titles = _path()  # with corpus = ORQA's blocks.tfr: its titles.tfr
    # With blocks.tfr / titles.tfr: REALM's examples.tfr (the same blocks, pre-tokenized), used
    # as they are instead of splitting and tokenizing 13M blocks again.
    c.data.examples = _path()
    c.data.block_len = 288  # wordpieces per block, [CLS] title [SEP] body [SEP] included
    c.data.max_documents = config_dict.placeholder(int)  # the first n documents only
    # "dataset:split": keep only the gold passages of that split's questions (mini sets), up to
    # max_documents of them; builds small corpora whose questions are answerable.
    c.data.gold_questions = _path()
    c.data.blocks_dir = _path()  # default: <workdir>/../cache/blocks-<hash of the fields above>

    c.optim = ConfigDict()
    c.optim.learning_rate = 1e-5
    c.optim.warmup_steps = config_dict.placeholder(int)  # default min(10000, max(100, steps/10))
    c.optim.weight_decay = 0.01
    c.optim.max_grad_norm = 1.0
    # A regex over parameter paths ("params/encoder/bert/layer_5/..."): only the parameters it
    # matches (re.search) train, the rest are frozen (no gradient, no decay); empty: all train.
    c.optim.trainable = ""
    # The parameters this regex matches take steps lr_scale times larger (e.g. a head that
    # starts random beside pretrained layers); empty: one learning rate for all.
    c.optim.lr_scaled = ""
    c.optim.lr_scale = 1.0

    c.eval = ConfigDict()
    c.eval.num_batches = 4  # ICT / REALM held-out batches per evaluation
    c.eval.num_questions = 200  # open-QA dev questions / retrieval-recall questions
    return c


def _index_section() -> ConfigDict:
    """How the MIPS index over Z is built and refreshed."""
    index = ConfigDict()
    index.searcher = "exact"  # "exact" (sharded brute force) or "scann"
    # "sync": the trainer re-embeds Z itself every refresh_every steps (deterministic);
    # "async": a refresher (thread or process) indexes new checkpoints while training goes on.
    index.mode = "sync"
    index.refresh_every = 500  # sync mode; 0: never after the first index (a frozen index)
    index.refresher = "thread"  # async mode: "thread" or "process"
    # Async mode: swap a newer index in only once the one in use is this many steps old (the
    # "30x stale MIPS" ablation of Table 2 is 30 x the steps a refresh takes).
    index.min_index_age = 0
    # Async mode, 0: free-running (an index is swapped in when it arrives, so the index a step
    # gets depends on machine speed). L > 0: deterministic; step t's batch uses the index of the
    # newest checkpoint (every checkpoint_every_steps, and step 0) with step <= t - L, the
    # refresher indexes exactly those checkpoints in order, and a step whose index is late
    # waits for it (up to swap_timeout seconds, then the run stops with an error).
    index.swap_lag = 0
    index.swap_timeout = 3600.0
    index.poll_seconds = 1.0
    index.emb_batch_size = 256
    index.emb_dtype = "float32"
    index.keep = 3  # published indexes kept
    # Index the final params too: the next stage (REALM after ICT, fine-tuning after either)
    # reuses it instead of embedding the corpus again.
    index.publish_final = True
    return index


def ict_config() -> ConfigDict:
    """ORQA's Inverse Cloze Task warm start of the retriever."""
    c = base_config("ict")
    c.optim.learning_rate = 1e-4
    c.ict = ConfigDict()
    c.ict.query_len = 64
    c.ict.block_len = 288
    c.ict.remove_prob = 0.9  # the query sentence is removed from its block 90% of the time
    c.index = _index_section()
    return c


def _masked_sentences(c: ConfigDict) -> ConfigDict:
    """The masked-sentence sampler's fields (REALM pre-training and the MLM warm start)."""
    c.realm = ConfigDict()
    c.realm.query_len = 96
    c.realm.max_masks = 10
    c.realm.masker = "salient"  # or the Table 2 ablations "random_token", "random_span"
    c.realm.eval_block_percent = 2  # blocks (by uid hash) whose sentences are eval-only
    # True: only sentences whose masked span another block of the corpus holds (data/evidence.py;
    # salient masks only): REALM never retrieves a query's own block, so the others teach nothing.
    c.realm.require_evidence = False
    # Evidence must also share this many of the sentence's rare wordpieces (in at most
    # evidence_max_df of the blocks): a year or a common name alone is no evidence. 0: any block.
    c.realm.evidence_min_shared = 0
    c.realm.evidence_max_df = 0.01
    return c


def mlm_config() -> ConfigDict:
    """The knowledge-augmented encoder's MLM warm start (our stand-in for BERT's MLM head).

    Salient-span MLM on the corpus with a document as context: ``[CLS] masked sentence [SEP]
    context [SEP]``, the joint input REALM's encoder reads, where the context is the rest of
    the sentence's own block (its other sentences), another block holding the masked span, no
    document (the null document's input) or a random other block. Only ``optim.trainable``
    parameters learn, at this stage's own rate.
    """
    c = _masked_sentences(base_config("mlm"))
    c.optim.learning_rate = 1e-4
    c.mlm = ConfigDict()
    c.mlm.context_len = 288  # wordpieces of the context input (REALM's cand_len)
    c.mlm.null_percent = 25  # examples with no context (the null document)
    c.mlm.random_percent = 25  # examples with a random other block as context
    # Examples whose context is another block holding the masked span (data/evidence.py), as
    # REALM's retrieved documents are at best; the rest of its own block where none does.
    c.mlm.evidence_percent = 0
    # Examples whose context is a hard negative: the ICT retriever's (init.ict_workdir) highest
    # ranked block without the masked span, REALM's likeliest wrong candidate.
    c.mlm.hard_percent = 0
    # Training contexts cut to this many wordpieces around the masked span (0: context_len); the
    # gate is always measured at context_len.
    c.mlm.train_context_len = 0
    return c


def realm_config() -> ConfigDict:
    """REALM pre-training: salient-span MLM marginalised over retrieved documents."""
    c = _masked_sentences(base_config("realm"))
    c.optim.learning_rate = 3e-5
    c.init.mlm_workdir = _path()  # the encoder (BERT + MLM head) from an MLM warm-start run
    # False: no gradient into f(x, z) (the control run; the retriever stays as it started).
    c.realm.retriever_gradient = True
    c.realm.cand_len = 288
    c.realm.num_candidates = 8  # K, the null document included
    c.realm.joint_marginal = False  # True: the paper's prod_j inside the sum over z
    # X, the corpus masked sentences come from (jsonl {title, text}); unset: X = Z (REALM-Wiki).
    c.data.target_corpus = _path()
    c.index = _index_section()
    # Zero-shot retrieval recall@5 of the current index (Table 2's second column) on the dev
    # split of these questions ("dataset" or "dataset:split"; empty: skip).
    c.eval.recall_questions = "mini_nq"
    return c


def openqa_config() -> ConfigDict:
    """ORQA-style open-QA fine-tuning over a frozen index of Z."""
    c = base_config("openqa")
    c.optim.learning_rate = 1e-5
    c.openqa = ConfigDict()
    c.openqa.dataset = "mini_nq"  # a realm_openqa config, or "" with train_file / dev_file
    c.openqa.train_file = _path()  # jsonl {question, answer: [...]}
    c.openqa.dev_file = _path()
    c.openqa.regex = False  # answers are regexes (CuratedTrec); set by the ct configs
    c.openqa.dev_percent = 10  # no dev split shipped: this share of train (by question hash)
    c.openqa.only_gold_in_corpus = False  # drop questions whose gold passage is not in Z
    c.openqa.question_len = 64
    c.openqa.retriever = "dense"  # or "bm25": BM25's beam, the same reader (a baseline)
    c.openqa.retriever_beam = 5000
    c.openqa.reader_beam = 5
    c.openqa.reader_len = 288 + 32
    c.openqa.max_gold_spans = 16
    c.index = _index_section()
    c.index.refresh_every = 0  # frozen: built once from the pretrained embedder
    c.eval.predict_batch_size = 8
    return c


def shrink_to_tiny(c: ConfigDict) -> ConfigDict:
    """The smoke-test scale of any stage (2-layer 32-wide BERT, ~40 passages, a few steps).

    The corpus is the gold passages of the first mini-NQ train questions, so the open-QA stage
    has answerable questions; every stage gets the same data fields and so shares one block cache.
    """
    c.model.bert, c.model.num_hidden_layers, c.model.proj_size = "tiny", None, 16
    c.model.span_hidden_size, c.model.max_span_width = 16, 4
    c.init.bert = "random"
    c.data.corpus, c.data.titles = MINI_PASSAGES, None
    c.data.gold_questions, c.data.max_documents, c.data.block_len = "mini_nq:train", 40, 64
    c.num_train_steps, c.batch_size = 4, 8
    c.log_every_steps, c.checkpoint_every_steps, c.eval_every_steps = 1, 2, 0
    c.keep_checkpoints = 2
    c.progress = False
    c.eval.num_batches, c.eval.num_questions = 1, 8
    c.optim.learning_rate, c.optim.warmup_steps = 1e-3, 1
    c.eval_at_start = False
    c.optim.trainable = ""
    if "index" in c:
        c.index.searcher, c.index.emb_batch_size = "exact", 64
        c.index.mode, c.index.refresh_every = "sync", 2 if c.stage == "realm" else 0
        c.index.min_index_age = c.index.swap_lag = 0
    if c.stage == "mlm":
        c.realm.query_len, c.realm.max_masks, c.mlm.context_len = 24, 4, 64
    if c.stage == "ict":
        c.ict.query_len, c.ict.block_len = 16, 64
    if c.stage == "realm":
        c.realm.query_len, c.realm.cand_len, c.realm.num_candidates, c.realm.max_masks = (
            24,
            64,
            3,
            4,
        )
        c.eval.recall_questions = "mini_nq"
    if c.stage == "openqa":
        c.openqa.dataset, c.openqa.only_gold_in_corpus = "mini_nq", True
        c.openqa.question_len, c.openqa.reader_len = 16, 80
        c.openqa.retriever_beam, c.openqa.reader_beam = 8, 2
        c.eval.predict_batch_size = 4
    return c


def released_config(stage: str, scale: str = "full") -> ConfigDict:
    """A stage's config for REALM's released artifacts, converted by ``experiments/convert.py``.

    BERT-base with TF BERT's tanh GELU (``gelu_new``), REALM's 128-d retriever, ORQA's 288-token
    blocks and open-QA recipe. ``released`` names the artifacts: ``format`` "tf" (the original
    checkpoints) or "hf" (the PyTorch port's); ``checkpoint`` the fine-tuned model (open-QA) or
    the pretrained embedder (REALM); ``encoder_checkpoint`` the pretrained encoder (REALM only);
    ``block_emb`` the block embeddings (TF ``encoded.ckpt``, a ``.npy``, or empty for the port's
    open-QA state dict, which carries them). Relative paths are the release's own layout.
    ``scale`` "tiny" is the test shape.
    """
    c = openqa_config() if stage == "openqa" else realm_config()
    c.model.bert, c.model.hidden_act, c.model.dtype = "base", "gelu_new", "float32"
    c.data.corpus = "enwiki-20181220/blocks.tfr"
    c.data.titles = "enwiki-20181220/titles.tfr"
    c.data.block_len = 288
    c.index.searcher, c.index.emb_dtype = "scann", "bfloat16"
    c.released = ConfigDict()
    c.released.format = "tf"
    c.released.checkpoint = _path()
    c.released.encoder_checkpoint = _path()
    c.released.block_emb = "cc_news_pretrained/embedder/encoded/encoded.ckpt"
    # Open-QA: the document tower that made block_emb (the pretrained embedder), saved beside the
    # index so corpus edits embed new blocks the same way; empty: none (edits need a re-index).
    c.released.doc_tower = "cc_news_pretrained/embedder" if stage == "openqa" else ""
    if stage == "openqa":
        c.openqa.question_len = 64
        c.openqa.retriever_beam = 5000  # ORQA: the retriever's beam; the reader reads its top 5
        c.openqa.reader_beam = 5
        c.openqa.reader_len = 288 + 32
        c.eval.predict_batch_size = 16
    else:
        c.realm.cand_len = 288  # the released embeddings are of 288-token blocks
    if scale == "tiny":
        shrink_released_to_tiny(c)
    elif scale != "full":
        raise ValueError(f"scale {scale!r}: expected full or tiny")
    return c


def shrink_released_to_tiny(c: ConfigDict) -> ConfigDict:
    """The released configs at test scale: a 2-layer 32-wide BERT, short inputs, exact search."""
    c.model.bert, c.model.proj_size = "tiny", 16
    c.model.span_hidden_size, c.model.max_span_width = 12, 4
    c.data.block_len = 64
    c.index.searcher, c.index.emb_dtype, c.index.emb_batch_size = "exact", "float32", 64
    c.progress = False
    if c.stage == "openqa":
        c.openqa.question_len, c.openqa.reader_len = 16, 80
        c.openqa.retriever_beam, c.openqa.reader_beam = 8, 2
        c.eval.predict_batch_size = 4
    else:
        c.realm.query_len, c.realm.cand_len = 24, 64
    return c
