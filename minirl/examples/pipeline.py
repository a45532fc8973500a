"""The stages of happy_gpt, each cached (`stages.py`): tokenizer → pretrain → SFT → reward model → RL.

`prepare` runs the stages every RL run shares (tokenizer, pretraining, SFT on positive
tweets); `reward_function` builds R(x, y) (VADER, or a Bradley–Terry model trained on
human labels or on AI-judge labels); `run_rl` trains one policy from the SFT model.
`python -m minirl.examples.happy_gpt` and `python -m minirl.examples.compare` both
call them on one `--out`, so they share every finished stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field

from minirl import backend
from minirl.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from minirl.data import CORPORA, load_corpus, train_val_split
from minirl.data.preferences import pairs_from_labels
from minirl.data.selection import judged_indices, positive_documents, require_labels
from minirl.data.sft import SFTDataset
from minirl.data.tokens import TokenStream
from minirl.examples.stages import Stage, StageCache, write_atomic
from minirl.model import GPT, GPTConfig
from minirl.rl.reward_model import RewardModelConfig, ScalarHeadModel, reward_fn_from_model, train_reward_model
from minirl.rl.rlaif import label_pairs_with_judge, score_judge
from minirl.rl.sentiment import vader_reward
from minirl.rl.trainer import RLConfig, train_rl
from minirl.tokenizer import Tokenizer
from minirl.train import TrainConfig, train_lm
from minirl.validation import check_ranges

REWARDS = ("vader", "rm", "rlaif")


@dataclass
class DataConfig:
    corpus: str = "tweets"
    """tweets (real, labelled), movie_reviews, or a file of your own: .txt (one document per line, or
    <|endoftext|>-separated as TinyStories), or .csv/.jsonl (see --text-column, --label-column)"""
    text_column: str = "text"
    """the column (CSV) or key (JSONL) that holds each document's text, for a corpus file"""
    label_column: str | None = None
    """the column or key that holds each document's label; without one, VADER picks the SFT set"""
    positive_label: str = "positive"
    """the label value of the documents SFT fine-tunes on (e.g. 1, pos, 5)"""
    negative_label: str = "negative"
    """the label value that loses to --positive-label in the preference pairs of --reward rm"""
    vocab_size: int = 2048
    """BPE vocabulary size, <|endoftext|> included"""
    val_fraction: float = 0.05
    """share of documents held out (validation loss, perplexity, --prompts val)"""
    prompts: str = field(default="eot", metadata={"choices": ("eot", "val")})
    """eot: unconditional samples from <|endoftext|>; val: the first prompt_tokens tokens of held-out tweets"""
    prompt_tokens: int = 4
    """tokens of a held-out tweet given as the prompt, with --prompts val"""
    positive_threshold: float = 0.05
    """on a corpus without labels, SFT uses the documents whose VADER compound is above this"""

    def __post_init__(self):
        check_ranges(self, vocab_size="[257, inf)", val_fraction="(0, 1)", prompt_tokens="[0, inf)",
                     positive_threshold="[-1, 1)")
        if self.positive_label == self.negative_label:
            raise ValueError(f"--positive-label and --negative-label are both {self.positive_label!r}; "
                             "a preference pair needs two different labels.")


def load_labelled_corpus(data: DataConfig, need_negative: bool):
    """The corpus of --corpus, its labels named "positive" and "negative" as --positive-label and
    --negative-label say; refused here, before any stage runs, if it lacks what the stages need.

    A file without labels (a .txt, or a .csv/.jsonl with no --label-column) is kept as it is:
    VADER then picks the SFT set (`choose_positive`), and `need_negative` (--reward rm) is refused."""
    is_file = data.corpus not in CORPORA
    columns = {"text_column": data.text_column, "label_column": data.label_column} if is_file else {}
    if is_file and data.corpus.endswith(".txt"):
        columns = {}
    corpus = load_corpus(data.corpus, **columns)
    if corpus.labels is None:
        if need_negative:
            require_labels(corpus, "--reward rm", "--reward rlaif (VADER judges pairs of SFT samples) or "
                           "--reward vader, or name the file's label column with --label-column")
        return corpus
    names = [str(n) for n in corpus.label_names or ()]
    counts = ", ".join(f"{n!r}: {c}" for n, c in corpus.label_counts().items())
    wanted = [("--positive-label", data.positive_label)] + ([("--negative-label", data.negative_label)]
                                                           if need_negative else [])
    for flag, value in wanted:
        if value not in names:
            raise ValueError(f"{flag} {value!r} is not a label of {corpus.name!r}; its labels are {{{counts}}}. "
                             f"Pass {flag} with one of them.")
    role = {data.positive_label: "positive", data.negative_label: "negative"}
    renamed = tuple(role.get(n, n if n not in ("positive", "negative") else f"other:{n}") for n in names)
    return dataclasses.replace(corpus, label_names=renamed)


@dataclass
class StageRecord:
    name: str
    status: str
    """ran, resumed (finished a killed run), or cached (reused as it was)"""
    seconds: float
    """wall time in this run"""
    dir: str
    info: dict = field(default_factory=dict)


@dataclass
class Base:
    """What every RL run starts from."""
    tokenizer: Tokenizer
    pretrained: GPT
    sft: GPT
    train_docs: object
    val_docs: object
    prompts: list
    """the RL prompts (token ids)"""
    eval_prompts: list
    """one prompt per evaluation sample, the same for every model"""
    val_positive: SFTDataset
    """held-out positive tweets, for perplexity"""
    stages: dict
    """name -> Stage"""
    records: list


def corpus_digest(corpus) -> str:
    """SHA-256 of a corpus's texts, labels and label names (which label is "positive" shapes SFT and the pairs)."""
    digest = hashlib.sha256()
    for i, text in enumerate(corpus.texts):
        digest.update(f"{text}\x00{corpus.labels[i] if corpus.labels is not None else ''}\x00".encode())
    digest.update(json.dumps(list(corpus.label_names or ())).encode())
    return digest.hexdigest()


def copy_model(model):
    twin = type(model)(model.config)
    twin.load_state_dict(model.state_dict())
    return twin


def load_weights(model, path):
    restore(load_checkpoint(path), model, restore_rng=False)
    return model


def run_stage(cache: StageCache, stage: Stage, files: list[str], records: list, work, seed: int,
              resumable: tuple[str, ...] = ("ckpt.npz",)) -> dict:
    """Run `work()` (which returns the info to record) unless `stage` is already done; record its status.

    `files` are the stage's outputs; `resumable` the checkpoints its trainer resumes from.
    """
    t0 = time.perf_counter()
    if cache.is_done(stage, files, resumable):
        info = cache.info(stage)
        records.append(StageRecord(stage.name, "cached", time.perf_counter() - t0, str(stage.dir), info))
        return info
    status = "resumed" if any(stage.path(f).exists() for f in resumable) else "ran"
    backend.manual_seed(seed)  # each stage seeds itself, so a cached upstream never shifts the RNG
    try:
        info = work()
    except CheckpointError as e:  # a checkpoint its trainer refuses to resume (other settings): set aside, start over
        stale = [f for f in resumable if stage.path(f).exists()]
        if not stale:
            raise
        for name in stale:
            cache.set_aside(stage, name, f"cannot resume from it ({e})")
        status = "ran"
        backend.manual_seed(seed)
        info = work()
    info["seconds"] = time.perf_counter() - t0
    cache.finish(stage, files, info)
    records.append(StageRecord(stage.name, status, info["seconds"], str(stage.dir), info))
    return info


def choose_positive(cache: StageCache, train_docs, val_docs, data: DataConfig, digest: str, seed: int,
                    records: list):
    """The positive train and validation documents: by label, or on a corpus without labels by
    VADER compound > data.positive_threshold. VADER's choice is kept as a stage (`chosen.json`),
    because scoring every story of a large corpus takes minutes and a rerun should not repeat it."""
    if train_docs.labels is not None:
        return positive_documents(train_docs), positive_documents(val_docs)
    stage = cache.stage("sft_set", {"corpus_sha256": digest, "val_fraction": data.val_fraction, "seed": seed,
                                    "judge": "vader", "threshold": data.positive_threshold})

    def select():
        chosen = {name: judged_indices(docs, vader_reward, data.positive_threshold)
                  for name, docs in (("train", train_docs), ("val", val_docs))}
        write_atomic(stage.path("chosen.json"), json.dumps(chosen))
        return {name: len(indices) for name, indices in chosen.items()}
    run_stage(cache, stage, ["chosen.json"], records, select, seed=seed, resumable=())
    chosen = json.loads(stage.path("chosen.json").read_text())
    return train_docs.subset(chosen["train"]), val_docs.subset(chosen["val"])


def prepare(cache: StageCache, data: DataConfig, model_cfg: GPTConfig, pretrain_cfg: TrainConfig,
            sft_cfg: TrainConfig, seed: int, eval_samples: int, corpus=None) -> Base:
    """The shared stages on `corpus` (`load_labelled_corpus(data, ...)` when None)."""
    records: list[StageRecord] = []
    corpus = corpus if corpus is not None else load_labelled_corpus(data, need_negative=False)
    train_docs, val_docs = train_val_split(corpus, data.val_fraction, seed=seed)
    digest = corpus_digest(corpus)
    # The SFT set is chosen first, so an empty one is refused before minutes of pretraining.
    positive, val_positive_docs = choose_positive(cache, train_docs, val_docs, data, digest, seed, records)

    # The corpus's content (not just its name or path) and the backend are part of the first key, so an
    # edited file or a GPU run's checkpoints are never reused for another run; every later key inherits them.
    tok_stage = cache.stage("tokenizer", {"corpus": data.corpus, "corpus_sha256": digest,
                                          "vocab_size": data.vocab_size, "val_fraction": data.val_fraction,
                                          "seed": seed, "backend": backend.name()})

    def train_tokenizer():
        Tokenizer.train(train_docs.texts, data.vocab_size).save(tok_stage.path("tokenizer.tiktoken"))
        return {"documents": len(train_docs)}
    run_stage(cache, tok_stage, ["tokenizer.tiktoken"], records, train_tokenizer, seed=seed, resumable=())
    tok = Tokenizer.load(tok_stage.path("tokenizer.tiktoken"))
    model_cfg = dataclasses.replace(model_cfg, vocab_size=tok.vocab_size)

    pre_stage = cache.stage("pretrain", {"model": model_cfg.to_dict(), "train": dataclasses.asdict(pretrain_cfg)},
                            [tok_stage])
    backend.manual_seed(seed * 100 + 11)  # the initial weights, drawn the same whether or not earlier stages ran
    pretrained = GPT(model_cfg)

    def pretrain():
        history = train_lm(pretrained, TokenStream.from_texts(train_docs.texts, tok, model_cfg.block_size),
                           pretrain_cfg, val_data=TokenStream.from_texts(val_docs.texts, tok, model_cfg.block_size),
                           checkpoint_path=pre_stage.path("ckpt.npz"), tokenizer=tok,
                           log_path=pre_stage.path("metrics.jsonl"), desc="pretrain", flag_prefix="--pretrain-")
        return {"val_loss": history[-1].get("val_loss") if history else None,
                "parameters": pretrained.num_parameters()}
    run_stage(cache, pre_stage, ["ckpt.npz"], records, pretrain, seed=seed * 100 + 1)
    load_weights(pretrained, pre_stage.path("ckpt.npz"))

    chosen_by = data.positive_label if corpus.labels is not None else f"vader>{data.positive_threshold}"
    sft_stage = cache.stage("sft", {"train": dataclasses.asdict(sft_cfg), "label": chosen_by}, [pre_stage])
    sft = copy_model(pretrained)

    def fine_tune():
        history = train_lm(sft, SFTDataset.from_texts(positive.texts, tok, model_cfg.block_size), sft_cfg,
                           checkpoint_path=sft_stage.path("ckpt.npz"), tokenizer=tok,
                           log_path=sft_stage.path("metrics.jsonl"), desc="sft", flag_prefix="--sft-")
        return {"final_loss": history[-1]["loss"] if history else None, "examples": len(positive)}
    run_stage(cache, sft_stage, ["ckpt.npz"], records, fine_tune, seed=seed * 100 + 2)
    load_weights(sft, sft_stage.path("ckpt.npz"))
    sft.eval()

    eot = tok.eot_id
    if data.prompts == "val":
        prompts = [[eot] + ids[:data.prompt_tokens] for ids in tok.encode_batch(val_docs.texts)
                   if len(ids) > data.prompt_tokens]
        if not prompts:
            raise ValueError(f"no held-out tweet is longer than --prompt-tokens {data.prompt_tokens}.")
    else:
        prompts = [[eot]]
    eval_prompts = [prompts[i % len(prompts)] for i in range(eval_samples)]
    val_positive = SFTDataset.from_texts(val_positive_docs.texts, tok, model_cfg.block_size)
    return Base(tok, pretrained, sft, train_docs, val_docs, prompts, eval_prompts, val_positive,
                {"tokenizer": tok_stage, "pretrain": pre_stage, "sft": sft_stage}, records)


def reward_function(cache: StageCache, base: Base, kind: str, rm_cfg: RewardModelConfig, pairs: int,
                    max_new_tokens: int, seed: int):
    """R(x, y) on decoded texts, and the stage that trained it (None for VADER).

    rm:    Bradley–Terry on human labels (a positive training tweet beats a negative one),
           from the pretrained backbone.
    rlaif: Bradley–Terry on AI-judge labels: VADER picks the happier of two SFT samples
           (ties, which carry no preference, are dropped), from the pretrained backbone.
    """
    if kind not in REWARDS:
        raise ValueError(f"unknown reward {kind!r}; choose one of {', '.join(REWARDS)}.")
    if kind == "vader":
        return vader_reward, None
    tok = base.tokenizer
    parents = [base.stages["pretrain"]] + ([base.stages["sft"]] if kind == "rlaif" else [])
    judged = {"max_new_tokens": max_new_tokens} if kind == "rlaif" else {}  # the judged samples' length
    stage = cache.stage(f"reward_{kind}", {"rm": dataclasses.asdict(rm_cfg), "pairs": pairs, "seed": seed, **judged},
                        parents)
    backend.manual_seed(seed * 100 + 13)  # the fresh head's weights
    model = ScalarHeadModel.from_pretrained(base.pretrained)

    def train():
        if kind == "rm":
            require_labels(base.train_docs, "--reward rm", "--reward rlaif or --reward vader")
            train_pairs = pairs_from_labels(base.train_docs, tok, pairs, seed=seed)
            val_pairs = pairs_from_labels(base.val_docs, tok, max(pairs // 10, 50), seed=seed + 1)
        else:
            judged = label_pairs_with_judge(base.sft, [[tok.eot_id]] * pairs, score_judge(vader_reward), tok,
                                            max_new_tokens, rng=backend.rng(seed))
            text = lambda ids: tok.decode([t for t in ids if t != tok.eot_id])  # noqa: E731
            judged = [p for p in judged if vader_reward([text(p.chosen_ids)]) != vader_reward([text(p.rejected_ids)])]
            if len(judged) < 20:
                raise ValueError(f"only {len(judged)} of {pairs} judged pairs were not ties; raise --rm-pairs.")
            cut = len(judged) * 9 // 10
            train_pairs, val_pairs = judged[:cut], judged[cut:]
        history = train_reward_model(model, train_pairs, val_pairs, rm_cfg, checkpoint_path=stage.path("ckpt.npz"))
        return {"val_accuracy": history[-1].get("val_accuracy") if history else None, "pairs": len(train_pairs)}
    run_stage(cache, stage, ["ckpt.npz"], base.records, train, seed=seed * 100 + 3)
    load_weights(model, stage.path("ckpt.npz"))
    model.eval()
    return reward_fn_from_model(model, tok), stage


def rl_stage(cache: StageCache, base: Base, rl_cfg: RLConfig, reward_stage: Stage | None, reward_kind: str,
             seed: int, label: str | None = None) -> Stage:
    """The stage of one RL run, keyed by its settings, prompts and seed, under the SFT model and the reward."""
    parents = [base.stages["sft"]] + ([reward_stage] if reward_stage is not None else [])
    return cache.stage(label or f"rl_{rl_cfg.algo}", {"rl": rl_cfg.settings(), "reward": reward_kind,
                                                      "prompts": base.prompts[:50], "n_prompts": len(base.prompts),
                                                      "seed": seed}, parents)


def run_rl(cache: StageCache, base: Base, rl_cfg: RLConfig, reward_fn, reward_stage: Stage | None,
           reward_kind: str, seed: int, label: str | None = None) -> tuple[GPT, list[dict], dict]:
    """Train a copy of the SFT model with `rl_cfg` against `reward_fn` (π_ref = SFT); returns
    the policy, its per-iteration metrics and what the stage recorded."""
    stage = rl_stage(cache, base, rl_cfg, reward_stage, reward_kind, seed, label)
    return train_policy(cache, stage, base.records, base.sft, base.prompts, base.tokenizer, rl_cfg, reward_fn, seed)


def train_policy(cache: StageCache, stage: Stage, records: list, sft: GPT, prompts, tokenizer, rl_cfg: RLConfig,
                 reward_fn, seed: int, value_init=None) -> tuple[GPT, list[dict], dict]:
    """The RL stage: train a copy of `sft` (also π_ref) on `prompts` against `reward_fn`, resumable
    from ``rl.npz``, the policy kept as ``policy.npz``. PPO's value model starts from `value_init`
    (a GPT or a ScalarHeadModel; the SFT model when None). Returns the policy, its per-iteration
    metrics and what the stage recorded."""
    policy = copy_model(sft)
    resumable = rl_cfg.algo != "best_of_n"  # best-of-n rounds are not checkpointed: a killed run starts over
    log = stage.path("metrics.jsonl")

    def train():
        value_model = ScalarHeadModel.from_pretrained(value_init if value_init is not None else sft) \
            if rl_cfg.algo == "ppo" else None
        history = train_rl(policy, sft, prompts, reward_fn, tokenizer=tokenizer, config=rl_cfg,
                           value_model=value_model, log_path=log, checkpoint_interval=5,
                           checkpoint_path=stage.path("rl.npz") if resumable else None)
        logged = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        last = {**(logged[-1] if logged else {}), **(history[-1] if history else {})}  # a resume may have had nothing left
        save_checkpoint(stage.path("policy.npz"), policy, step=last.get("iteration", last.get("step", 0)))
        return {"iterations": last.get("iteration", last.get("step")), "sampled_tokens": last.get("sampled_tokens")}
    info = run_stage(cache, stage, ["policy.npz"], records, train, seed=seed * 100 + 4,
                     resumable=("rl.npz",) if resumable else ())
    load_weights(policy, stage.path("policy.npz"))
    policy.eval()
    history = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return policy, history, info
