"""SimCSE as a `transformers` model: any `AutoModel` encoder, a pooler, and the contrastive objective.

`SimCSEModel.forward` returns what `Trainer` needs, so no loss override is required:
  * training rows, `input_ids` of shape (batch, n, length) with n = 1 (unsupervised: each sentence is encoded
    twice in one pass, the two views differ only through dropout), 2 (sentence, positive) or 3 (sentence,
    positive, hard negative): `loss` is the InfoNCE loss of `contrastive_loss`;
  * scored STS pairs, n = 2 and `labels` (gold scores, 0-5): `scores` holds, per pair, the four similarities
    (cosine, -euclidean, -manhattan, dot) that `sts_evaluation` correlates with the gold scores, and `loss` is the
    mean squared error between the cosine and the gold score / 5 (reported as `eval_loss`, never optimised).

`export_encoder` writes the plain encoder that `AutoModel.from_pretrained` loads with no newly initialised weight,
whose documented embedding (`EMBEDDING_RECIPES`) is exactly the vector that was evaluated, plus the
sentence-transformers files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from hub.model_dir import CHECKPOINT_MODEL_TYPE, LAYER_POOLERS, config_form

POOLER_TYPES = ("cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2")
CLS_POOLERS = ("cls", "cls_before_pooler")  # the embedding is read from the first token of the last layer
# Encoders whose position embeddings and attention masks `embed_packed` drives correctly (checked in the tests), and
# the attention implementations that take its block-diagonal mask.
PACKABLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "camembert")
PACKABLE_ATTENTION = ("sdpa", "eager")
# The kernels `sdpa` may choose from, all but cuDNN's: cuDNN attention (its first choice on an H100 with a mask) builds
# a plan for every new input shape, and packed or length-sorted batches bring new shapes at almost every step. On an
# H100, encoding 22,908 sentences took 4.0 s with it and 0.8 s without (bench/RESULTS.md).
SHAPE_AGNOSTIC_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
# Under CUDA graphs (`compile_layers(cuda_graphs=True)`) every distinct batch shape is recorded once, so packed row
# counts and padded lengths are rounded up to these multiples. Over 200 steps of 256 sampled benchmark triplets
# (bench.common), rows of 64 tokens: 69 row counts (160-249) become 7, and real tokens fill 94.7% of the rows instead
# of 98.6%. Padded training batches (encoders that cannot be packed) of at most 64 tokens take at most 4 lengths.
CUDA_GRAPH_ROWS, CUDA_GRAPH_LENGTHS = 16, 16

# How a user computes the evaluated embedding from `AutoModel(...)(**batch, output_hidden_states=True)` outputs of an
# exported model, keyed by the exported `config.simcse["embedding"]`. The model card prints these.
EMBEDDING_RECIPES = {
    "pooler_output": "outputs.pooler_output",
    "cls": "outputs.last_hidden_state[:, 0]",
    "avg": "mean of outputs.last_hidden_state over non-padding tokens",
    "avg_first_last": "mean over non-padding tokens of (outputs.hidden_states[1] + outputs.hidden_states[-1]) / 2",
    "avg_top2": "mean over non-padding tokens of (outputs.hidden_states[-1] + outputs.hidden_states[-2]) / 2",
}


@strict
class SimCSEConfig(PreTrainedConfig):
    """Encoder config (any `AutoConfig`) plus the SimCSE settings.

    pooler_type: one of `POOLER_TYPES`. `cls` is CLS + MLP (dense + tanh); `cls_before_pooler` the raw CLS state.
    temperature: the softmax temperature of InfoNCE (0.05 in the paper).
    hard_negative_weight: added to the logit of each sentence's own hard negative (0 = plain InfoNCE; the
        original SimCSE's `hard_negative_weight`, a log-weight).
    mlp_only_train: with `cls`, use the MLP in training only and embed with the raw CLS state (unsupervised SimCSE).
    gather_negatives: with several processes, every process's positives and hard negatives are negatives for every
        other process (N processes x batch b = one process x batch N*b); False keeps per-device negatives, as the
        published SimCSE-KO code had with DataParallel.
    embedding_chunk_size: in training, encode a step's sentences in chunks of this many without keeping activations,
        and recompute each chunk (same dropout) in the backward pass: a large contrastive batch in the memory of a
        chunk, with the same loss and gradients (gradient cache). None: one pass.
    length_buckets: for padded training batches, encode a step's sentences sorted by length in this many pieces, each
        padded to its own longest (packed batches, see `embed_packed`, have no padding to remove).
    """

    model_type = CHECKPOINT_MODEL_TYPE  # "simcse"; hub/ tells a checkpoint by it without importing this module
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    pooler_type: str = "cls"
    temperature: float = 0.05
    hard_negative_weight: float = 0.0
    mlp_only_train: bool = False
    gather_negatives: bool = True
    embedding_chunk_size: int | None = None
    length_buckets: int = 1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooler_type not in POOLER_TYPES:
            raise ValueError(f"pooler_type must be one of {POOLER_TYPES}, got {self.pooler_type!r}")
        if not 0 < self.temperature < math.inf:  # inf: every logit 0, a constant loss, nothing trained
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        if not math.isfinite(self.hard_negative_weight):  # NaN or inf makes every loss NaN from the first step
            raise ValueError(f"hard_negative_weight must be a finite number, got {self.hard_negative_weight}")
        if self.embedding_chunk_size is not None and self.embedding_chunk_size < 1:
            raise ValueError(f"embedding_chunk_size must be >= 1, got {self.embedding_chunk_size}")
        if self.length_buckets < 1:
            raise ValueError(f"length_buckets must be >= 1, got {self.length_buckets}")

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        """The encoder's config: the text model's special tokens and sizes are its (Trainer aligns the tokenizer's
        padding id with this config, and warned at every run while it was the wrapper's, which has none)."""
        return self.encoder

    @property
    def mlp_at_test(self) -> bool:
        """Whether the evaluated embedding goes through the MLP."""
        return self.pooler_type == "cls" and not self.mlp_only_train

    @property
    def exported_embedding(self) -> str:
        """Key of `EMBEDDING_RECIPES` for the exported plain encoder."""
        if self.pooler_type in CLS_POOLERS:
            return "pooler_output" if self.mlp_at_test else "cls"
        return self.pooler_type


# A training checkpoint's config.json says model_type "simcse": registered, AutoConfig (which AutoTokenizer calls on a
# checkpoint folder) reads it as this class instead of warning that it does not know the type.
AutoConfig.register(SimCSEConfig.model_type, SimCSEConfig, exist_ok=True)


def saved_form(path: str, **load_kwargs) -> str | None:
    """What a model folder or Hub id holds: "checkpoint" (a `SimCSEModel` saved in training), "export" (an encoder
    written by `SimCSEModel.export_encoder`, with its `simcse` block) or None (any other encoder). Reads its config."""
    return config_form(PreTrainedConfig.get_config_dict(path, **load_kwargs)[0])


class GatherWithGradient(torch.autograd.Function):
    """(rows, ...) of this process -> (processes x rows, ...) of all processes in rank order, through which gradients
    flow: the backward pass sums each row's gradient over the processes (every process's loss uses every row) and
    gives each process its own rows' sum. `torch.distributed.nn.functional.all_gather` did this; torch 2.13 deprecated
    it for a function of a private module, so this uses the public collectives (gloo and NCCL have both)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # all_reduce works in place; autograd's may be shared
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


@dataclass
class SimCSEOutput(ModelOutput):
    """loss: scalar; scores: (batch, 4) cosine, -euclidean, -manhattan, dot per STS pair (eval only)."""

    loss: torch.Tensor | None = None
    scores: torch.Tensor | None = None


def contrastive_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    z3: torch.Tensor | None = None,
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    gather: bool = False,
    real_rows: int | None = None,
) -> torch.Tensor:
    """InfoNCE of SimCSE (Gao et al. 2021, eq. 1 and 5).

    z1, z2, z3: (batch, hidden) embeddings of the sentences, their positives and (optionally) hard negatives.
    Row i's logits are cos(z1_i, z2_j) / temperature for all j, then cos(z1_i, z3_j) / temperature for all j, with
    `hard_negative_weight` added to cos(z1_i, z3_i) / temperature; the target is column i. Returns the mean
    cross-entropy over rows.

    gather: when torch.distributed is initialised with several processes (each with the same batch size), the
    candidates z2/z3 are those of all processes, gathered with gradient; each process keeps its own rows as queries.
    The mean of the processes' losses (what DDP's gradient averaging optimises) is then the loss of the whole batch.
    real_rows: with gather across processes, the rows of the gathered batch (in rank order) that are not repeats:
    accelerate completes the last batch of an epoch with rows from the epoch's start (`even_batches`) so that every
    process has a full one. The rows past them are then neither queries nor candidates, and the mean of the processes'
    losses is that of the real rows: the step of one process given those rows alone. None: every row is real. Without
    gather it is not looked at (per-device negatives keep the repeats, each process its own batch).
    """
    if real_rows is not None and real_rows < 1:
        raise ValueError(f"real_rows must be at least 1, got {real_rows}")
    offset, processes = 0, 1
    if gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        processes = dist.get_world_size()
        offset = dist.get_rank() * len(z1)
        z2 = GatherWithGradient.apply(z2)
        z3 = GatherWithGradient.apply(z3) if z3 is not None else None
    rows = torch.arange(len(z1), device=z1.device)
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    logits = z1 @ z2.T / temperature
    if z3 is not None:
        hard_logits = z1 @ F.normalize(z3.float(), dim=-1).T / temperature
        if hard_negative_weight:
            weight = torch.zeros_like(hard_logits)
            weight[rows, rows + offset] = hard_negative_weight
            hard_logits = hard_logits + weight
        logits = torch.cat([logits, hard_logits], dim=1)
    targets = rows + offset
    if real_rows is None or processes == 1 or real_rows >= len(z2):
        return F.cross_entropy(logits, targets)
    repeated = torch.arange(len(z2), device=z1.device) >= real_rows
    logits = logits.masked_fill(repeated.repeat(logits.shape[1] // len(z2)), float("-inf"))
    # A process whose rows are all repeats adds 0 (its backward still runs the gathers' collectives).
    loss = F.cross_entropy(logits, targets.masked_fill(targets >= real_rows, -100), reduction="sum")
    return loss * processes / real_rows


def pair_similarities(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, hidden) x (n, hidden) -> (n, 4): cosine, -euclidean, -manhattan, dot, row by row (higher = closer)."""
    a, b = a.float(), b.float()
    return torch.stack(
        [
            F.cosine_similarity(a, b, dim=-1),
            -(a - b).norm(dim=-1),
            -(a - b).abs().sum(dim=-1),
            (a * b).sum(dim=-1),
        ],
        dim=-1,
    )


# The dtype every encoder and checkpoint is loaded in, whatever it was saved in. transformers 5 loads a checkpoint in
# its saved dtype ("auto"): an encoder saved in bf16 trained with bf16 weights, whose AdamW updates mostly rounded away
# (79% of e5-small-ko's weights unchanged after 3 steps at lr 5e-5, against 15.5%, embedding rows of unused tokens, in
# fp32), under a card that says fp32. Mixed precision is the `bf16` / `fp16` arguments' work, on fp32 weights.
LOAD_DTYPE = torch.float32
# transformers 5.25 loads every model with `use_kernels` on (5.24 and before: off): with `kernels` installed, its
# dependency, layers such as GELU take code fetched from the Hub for the device the model is on, chosen again at each
# train()/eval() switch, so on a GPU the dev evaluations would run other code than training, and the compiled layers'
# code would change under them. Models here run the code transformers ships.
LOAD_KWARGS = {"dtype": LOAD_DTYPE, "use_kernels": False}


class EncoderWeightsMissing(ValueError):
    """A checkpoint that holds too few of its encoder's weights to start from (see `load_encoder`)."""


def load_encoder(source: str, **load_kwargs) -> PreTrainedModel:
    """`AutoModel.from_pretrained(source, **load_kwargs)`, with `LOAD_KWARGS` where load_kwargs do not name them; raises
    EncoderWeightsMissing where most of the encoder's parameters are not in the checkpoint (another architecture's
    weights under this config): transformers initialises them at random beside a load report, and a run went on to
    train, or score, a random encoder. A few new ones, such as the pooler an MLM checkpoint lacks, are normal."""
    encoder, info = AutoModel.from_pretrained(source, output_loading_info=True, **{**LOAD_KWARGS, **load_kwargs})
    parameters = dict(encoder.named_parameters())
    total = sum(p.numel() for p in parameters.values())
    missing = sum(parameters[name].numel() for name in info["missing_keys"] if name in parameters)
    if missing > total / 2:
        raise EncoderWeightsMissing(
            f"{source}: {missing / total:.0%} of the weights of its {encoder.config.model_type} encoder are not in its "
            f"checkpoint (transformers' load report lists them as MISSING), so they would start from random values; "
            "name a checkpoint of this architecture")
    return encoder


def pooler_dense(encoder: nn.Module) -> nn.Linear | None:
    """The Linear of the encoder's dense + tanh pooler, whose `pooler_output` is tanh(Linear(CLS state)): `pooler.dense`
    in the BERT family (BERT, RoBERTa, XLM-R, MPNet ...), the pooler itself beside a Tanh in ALBERT
    (`pooler_activation`) and BigBird (`activation`); None for an encoder without one (ELECTRA, DeBERTa,
    DistilBERT ...)."""
    pooler = getattr(encoder, "pooler", None)
    if isinstance(getattr(pooler, "dense", None), nn.Linear):
        return pooler.dense
    activation = getattr(encoder, "pooler_activation", getattr(encoder, "activation", None))
    return pooler if isinstance(pooler, nn.Linear) and isinstance(activation, nn.Tanh) else None


class FirstTokenLayer(nn.Module):
    """A BERT-family encoder layer (`PACKABLE_MODEL_TYPES`) at evaluation, for each row's first token alone.

    (rows, length, hidden) states and a (rows, 1, 1 or length, length) mask (or none) -> (rows, 1, hidden): the
    layer's output for the first token, whose query attends to every token's key and value as in the whole layer. A
    CLS pooler reads nothing else of the last layer, so the other tokens' query, attention, output projection and
    feed-forward (10 of the 12 hidden x hidden matrix products a token takes in a layer) are not computed. No dropout:
    evaluation only.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, *_, **__) -> torch.Tensor:
        attention = self.layer.attention
        heads = attention.self
        rows, first = len(hidden_states), hidden_states[:, :1]
        mask = None if attention_mask is None else attention_mask[:, :, :1]  # transformers may drop an all-True mask

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(rows, -1, heads.num_attention_heads, heads.attention_head_size).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            split(heads.query(first)), split(heads.key(hidden_states)), split(heads.value(hidden_states)),
            attn_mask=mask, scale=heads.scaling)
        first = attention.output(context.transpose(1, 2).reshape(rows, 1, -1), first)
        return self.layer.output(self.layer.intermediate(first), first)


class SimCSEModel(PreTrainedModel):
    """An `AutoModel` encoder with a SimCSE pooler; see the module docstring for inputs and outputs."""

    config_class = SimCSEConfig
    base_model_prefix = "simcse"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: SimCSEConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.encoder)
        if self.encoder.config._attn_implementation is None:
            # A composite config leaves its sub-config's implementation unset, and an unset one attends to padding.
            self.encoder.config._attn_implementation = self.config._attn_implementation
        self.mlp = None
        if config.pooler_type == "cls":
            hidden = config.encoder.hidden_size
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.post_init()
        self.freeze_encoder_pooler()

    def freeze_encoder_pooler(self) -> None:
        """The encoder's own pooler (BERT's dense + tanh) is never part of the loss: the `cls` pooler is this model's
        MLP, copied into it at export only. Frozen, it is no parameter without a gradient, which DDP refuses where
        Trainer leaves find_unused_parameters off (under activation checkpointing)."""
        if isinstance(pooler := getattr(self.encoder, "pooler", None), nn.Module):
            pooler.requires_grad_(False)

    def _init_weights(self, module: nn.Module) -> None:
        # Only the MLP is new; BERT-style init (normal, std = initializer_range) as in the original SimCSE.
        if self.mlp is not None and module is self.mlp[0]:
            module.weight.data.normal_(0.0, getattr(self.config.encoder, "initializer_range", 0.02))
            module.bias.data.zero_()

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "SimCSEModel":
        """A saved SimCSEModel (a training checkpoint), through `PreTrainedModel.from_pretrained` with `LOAD_KWARGS`
        where kwargs do not name them; the encoder's pooler frozen (loading makes new parameters, all trainable)."""
        model = super().from_pretrained(*args, **{**LOAD_KWARGS, **kwargs})
        model.freeze_encoder_pooler()
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """`PreTrainedModel.save_pretrained` (Trainer's checkpoints), with the weights as readable as the config."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if os.path.isfile(os.path.join(save_directory, "config.json")):  # not written where is_main_process is False
            _give_the_weights_the_folders_mode(str(save_directory))

    @classmethod
    def from_encoder(cls, encoder: str | PreTrainedModel, **simcse_kwargs) -> "SimCSEModel":
        """Wrap a pretrained encoder (a model id / folder, or a loaded model) with fresh SimCSE settings."""
        if isinstance(encoder, str):
            encoder = load_encoder(encoder)
        attention = encoder.config._attn_implementation
        config = SimCSEConfig(encoder=encoder.config, **simcse_kwargs)
        model = cls(config, encoder=encoder)
        model.encoder.config._attn_implementation = attention
        return model

    @classmethod
    def from_exported(cls, path: str, pooler_type: str = "cls_before_pooler", **load_kwargs) -> "SimCSEModel":
        """Load an exported (or any plain) encoder for evaluation.

        A folder written by `export_encoder` carries its own pooler in `config.simcse`; any other encoder (a Hub id
        such as klue/bert-base) is pooled with `pooler_type`. For an export whose MLP was folded into the encoder's
        pooler, the MLP is restored from that pooler, so the evaluated vector is the exported `pooler_output`.
        A training checkpoint (a saved `SimCSEModel`) loads whole, with its own settings.
        """
        form = saved_form(path, **load_kwargs)
        if form == "checkpoint":
            return cls.from_pretrained(path, **load_kwargs).eval()
        encoder = load_encoder(path, **load_kwargs)
        if form == "export":
            saved = encoder.config.simcse
            model = cls.from_encoder(encoder, **{k: saved[k] for k in ("pooler_type", "mlp_only_train")})
            if model.config.mlp_at_test:
                model.mlp[0].load_state_dict(pooler_dense(encoder).state_dict())
        else:
            model = cls.from_encoder(encoder, pooler_type=pooler_type)
        return model.eval()

    def repeated_layers(self) -> list[nn.Module]:
        """The encoder's repeated layers, which `compile_layers` compiles: the modules of each `nn.ModuleList` of two or
        more, all of one type (BERT's `encoder.layer`); [] for an encoder of one layer."""
        return [block for module in self.encoder.modules()
                if isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(m) for m in module}) == 1
                for block in module]

    def compile_layers(self, cuda_graphs: bool = False, **compile_kwargs) -> int:
        """Compile each of the encoder's repeated layers (BERT's `encoder.layer[i]` ...) in place with
        `torch.compile(dynamic=True, **compile_kwargs)`; returns how many.

        The layers share one compiled graph (their parameters are its inputs), so compiling costs about what one layer
        does, once, with dynamic sizes (no recompile as the packed row count changes). The compiled layers serve
        training steps only: in eval mode (evaluation, `encode`) the layers run eagerly, which is as fast on those
        small passes and spares a second compile for another grad mode, and under CUDA graphs the recording of every
        evaluation shape (bench/RESULTS.md). Parameter names, saving and export are unchanged. The embeddings, pooler,
        loss and the code between layers stay eager. Whole-model compilation (`TrainingArguments.torch_compile`) also
        fuses those, at several times the compile time.

        cuda_graphs: replay the compiled layers as CUDA graphs (mode "reduce-overhead"; CUDA only). Each distinct
        input shape is recorded once, so feed few shapes (`SimCSECollator`'s `pack_rows_multiple_of` and
        `pad_to_multiple_of`). Each training `forward` then starts a new graph step, and the token states are copied
        out of the graphs' memory, which the next step overwrites.
        """
        if not (layers := self.repeated_layers()):
            raise ValueError(f"{type(self.encoder).__name__} has no list of repeated layers to compile")
        if compile_kwargs.get("backend", "inductor") == "inductor":
            from torch._inductor import config as inductor_config, list_mode_options

            options = compile_kwargs.setdefault("options", {})
            if cuda_graphs:
                options.update(list_mode_options("reduce-overhead"))
            # Inductor fuses a backward pass's row and column reductions (LayerNorm's) only above a token count, and
            # guards on that: a smaller batch (an epoch's last, partial one) then recompiles the layers, 6.4 s on an
            # H100 (bench/RESULTS.md). The non-strict mode drops those size checks, and with them the recompile.
            if hasattr(inductor_config.triton, "mix_order_reduction_non_strict_mode"):
                options.setdefault("triton.mix_order_reduction_non_strict_mode", True)
        elif cuda_graphs:
            compile_kwargs["mode"] = "reduce-overhead"
        for block in layers:
            block.compile(dynamic=True, **compile_kwargs)
        self._layers_compiled, self._cuda_graphs = True, cuda_graphs
        return len(layers)

    _layers_compiled = _cuda_graphs = False

    @property
    def _graphs_replayed(self) -> bool:
        """Whether this pass replays CUDA graphs: cuda_graphs, in training (eval mode runs the layers eagerly)."""
        return self._cuda_graphs and self.training

    def _new_graph_step(self) -> None:
        """Under CUDA graphs: the outputs of the previous step's graphs may be overwritten from here on."""
        if self._graphs_replayed:
            torch.compiler.cudagraph_mark_step_begin()

    @property
    def supports_packing(self) -> bool:
        """Whether training batches may come packed (`SimCSECollator(pack_width=...)`) for this encoder."""
        return (self.config.encoder.model_type in PACKABLE_MODEL_TYPES
                and self.encoder.config._attn_implementation in PACKABLE_ATTENTION)

    def check_max_length(self, max_length: int, name: str = "max_length") -> None:
        """Raise ValueError (naming `name`) if sentences of `max_length` tokens, special tokens included, would run
        past the encoder's absolute position embeddings (checked for `PACKABLE_MODEL_TYPES`, whose positions are
        known); past them, the first long sentence fails with an index error (on a GPU, a device-side assert)."""
        positions = getattr(self.config.encoder, "max_position_embeddings", None)
        if self.config.encoder.model_type not in PACKABLE_MODEL_TYPES or positions is None:
            return
        limit = positions - self._position_offset
        if max_length > limit:
            raise ValueError(f"{name} {max_length} is longer than the {limit} positions of the "
                             f"{self.config.encoder.model_type} encoder; set it to {limit} or less")

    def check_text_encoder(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Raise ValueError where the encoder is none that SimCSE here trains: a model without token embeddings (an
        image or speech model), an encoder-decoder (its last_hidden_state is the decoder's), one whose token embeddings
        `tokenizer` does not fit (`check_vocabulary`), or, with a CLS pooler, one whose first token sees nothing after
        it (causal attention, as GPT-2's and Llama's: every sentence that starts alike would get the same embedding,
        and training collapses)."""
        name = type(self.encoder).__name__
        try:
            token_embeddings = self.encoder.get_input_embeddings()
        except NotImplementedError:
            token_embeddings = None
        if not isinstance(token_embeddings, nn.Embedding):
            raise ValueError(f"{name} does not embed token ids: it is not a text encoder")
        # T5EncoderModel (sentence-T5's) shares T5Model's config but has no decoder; Funnel's "decoder" upsamples
        decoder = getattr(self.encoder, "decoder", None)
        if getattr(self.config.encoder, "is_encoder_decoder", False) and decoder is not None:
            raise ValueError(f"{name} is an encoder-decoder model, whose last_hidden_state is its decoder's: SimCSE "
                             "here trains encoders (BERT, RoBERTa, ELECTRA, XLM-R and the like)")
        self.check_vocabulary(tokenizer)
        if self.config.pooler_type in CLS_POOLERS and not self._first_token_sees_the_rest(tokenizer):
            raise ValueError(f"pooler_type {self.config.pooler_type!r}: the first token of {name} sees none of the "
                             "tokens after it (causal attention), so every sentence, which starts with the same "
                             "token, would get the same embedding; "
                             "pool over the tokens instead: pooler_type 'avg' (sts_evaluation.py: --pooler avg)")

    def _first_token_sees_the_rest(self, tokenizer: PreTrainedTokenizerBase) -> bool:
        """Whether the first token's embedding changes with a later token (in eval mode: no dropout, no random draw)."""
        ids = tokenizer("한 남자가 음식을 먹는다.", truncation=True, max_length=8)["input_ids"]  # within any positions
        other = ids[:-1] + [(ids[-1] + 1) % len(tokenizer)]
        batch = torch.tensor([ids, other], device=self.encoder.device)
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                first = self.embed(batch, torch.ones_like(batch), use_mlp=False)
        finally:
            self.train(training)
        return not torch.allclose(first[0], first[1], rtol=0, atol=1e-6)

    def check_vocabulary(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Raise ValueError if the tokenizer gives ids past the encoder's token embeddings (another model's tokenizer):
        the first sentence with such a token fails with an index error (on a GPU, a device-side assert)."""
        embeddings = self.encoder.get_input_embeddings().num_embeddings
        if len(tokenizer) > embeddings:
            raise ValueError(f"the tokenizer has {len(tokenizer):,} tokens and the {self.config.encoder.model_type} "
                             f"encoder embeds {embeddings:,}: it is not this encoder's tokenizer; use its own")

    def check_exportable(self) -> None:
        """Raise ValueError if `export_encoder` could not write the evaluated embedding: with the MLP used at test
        time, the encoder needs a dense+tanh pooler to fold it into (`pooler_dense`; ELECTRA, for one, has none)."""
        if self.config.mlp_at_test and pooler_dense(self.encoder) is None:
            raise ValueError(
                f"pooler_type 'cls': {type(self.encoder).__name__} has no dense+tanh pooler to fold the SimCSE MLP "
                "into, so the exported model could not give the evaluated embedding; use pooler_type "
                "'cls_before_pooler' or set mlp_only_train"
            )

    # ------------------------------------------------------------------ embeddings
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, use_mlp: bool | None = None) -> torch.Tensor:
        """(rows, length) token ids and mask -> (rows, hidden) sentence embeddings.

        use_mlp: apply the MLP of the `cls` pooler; default: in training always, at test time unless mlp_only_train.
        """
        tokens = self._token_states(input_ids=input_ids, attention_mask=self._encoder_mask(attention_mask))
        if self.config.pooler_type in CLS_POOLERS:
            emb = tokens[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            emb = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self._apply_mlp(emb, use_mlp)

    def embed_packed(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        sentence_ids: torch.Tensor,
        sentence_starts: torch.Tensor,
        use_mlp: bool | None = None,
    ) -> torch.Tensor:
        """Packed rows (`SimCSECollator` with `pack_width`) -> (sentences, hidden) embeddings, row k for sentence id k.

        input_ids, position_ids, sentence_ids: (rows, width); sentence_starts: (sentences,) flat index of each
        sentence's first token. Each token attends only to the tokens of its own sentence (a block-diagonal mask),
        with the positions it has in its sentence, so every embedding is the one a padded pass gives, with no
        compute on padding. With `embedding_chunk_size` in training, the rows are encoded in pieces of about that
        many sentences under activation checkpointing (same random state in the recomputation: gradient cache).
        """
        size = self.config.embedding_chunk_size
        pieces = min(len(input_ids), -(-len(sentence_starts) // size)) if size and self.training else 1
        if pieces > 1:
            tokens = torch.cat([
                checkpoint(self._packed_token_states, ids, pos, sid, use_reentrant=False)
                for ids, pos, sid in zip(*(t.tensor_split(pieces) for t in (input_ids, position_ids, sentence_ids)),
                                         strict=True)
            ])
        else:
            tokens = self._packed_token_states(input_ids, position_ids, sentence_ids)
        tokens = tokens.reshape(-1, tokens.shape[-1])
        if self.config.pooler_type in CLS_POOLERS:
            emb = tokens[sentence_starts]
        else:  # mean over each sentence's tokens; the unfilled ends (id -1) go to a discarded extra row
            count, ids = len(sentence_starts), sentence_ids.reshape(-1)
            index = ids.masked_fill(ids < 0, count)
            sums = tokens.new_zeros(count + 1, tokens.shape[-1]).index_add_(0, index, tokens)
            lengths = tokens.new_zeros(count + 1).index_add_(0, index, tokens.new_ones(len(index)))
            emb = sums[:count] / lengths[:count, None]
        return self._apply_mlp(emb, use_mlp)

    def _packed_token_states(self, input_ids, position_ids, sentence_ids) -> torch.Tensor:
        same_sentence = (sentence_ids[:, :, None] == sentence_ids[:, None, :])[:, None]
        return self._token_states(input_ids=input_ids, attention_mask=self._attention_form(same_sentence),
                                  position_ids=position_ids + self._position_offset)

    def _encoder_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """A (rows, length) 0/1 padding mask -> the (rows, 1, 1, length) mask that packable encoders take as it is.

        Given the 2D mask, `transformers` checks whether it has any padding (`mask.all()`), which waits for the
        device on every forward pass; a prepared 4D mask skips that check.
        """
        if not self.supports_packing:
            return attention_mask
        return self._attention_form(attention_mask[:, None, None, :].bool())

    def _attention_form(self, allowed: torch.Tensor) -> torch.Tensor:
        """A 4D boolean mask (True: may attend) in the form the encoder's attention takes."""
        if self.encoder.config._attn_implementation == "eager":  # eager adds the mask to the scores
            # In the weights' dtype: a float32 mask made bf16 weights' scores float32, which the values then refused.
            mask = torch.zeros(allowed.shape, device=allowed.device, dtype=self.encoder.dtype)
            return mask.masked_fill_(~allowed, torch.finfo(mask.dtype).min)
        return allowed

    @contextmanager
    def _last_layer_for_the_first_token(self, attention_mask: torch.Tensor):
        """Within it, the encoder's last layer is a `FirstTokenLayer` where that gives every state the pooler reads:
        evaluation, a CLS pooler, padded rows (a (rows, 1, 1, length) mask: packed rows hold several sentences) of a
        packable encoder, not under torch.compile (whose graph would keep the swap); otherwise it changes nothing."""
        swap = (not self.training and self.config.pooler_type in CLS_POOLERS and self.supports_packing
                and attention_mask.dim() == 4 and attention_mask.shape[2] == 1 and not torch.compiler.is_compiling())
        if not swap:
            yield
            return
        layers = self.encoder.encoder.layer
        last = layers[-1]
        layers[-1] = FirstTokenLayer(last)
        try:
            yield
        finally:
            layers[-1] = last

    @property
    def _position_offset(self) -> int:
        # RoBERTa-style embeddings number positions from padding_idx + 1; BERT and ELECTRA from 0.
        padding_idx = getattr(self.encoder.embeddings, "padding_idx", None)
        return 0 if padding_idx is None else padding_idx + 1

    def _token_states(self, **encoder_inputs) -> torch.Tensor:
        """(rows, width, hidden) token states the pooler reads: the last layer, or the mean of two layers; at
        evaluation with a CLS pooler, the last layer's states may hold the first token alone, (rows, 1, hidden)."""
        pooler = self.config.pooler_type
        needs_layers = pooler in LAYER_POOLERS
        # Compiled layers (compile_layers) serve training steps only; eval mode runs them eagerly.
        eager = self._layers_compiled and not self.training
        stance = torch.compiler.set_stance("force_eager") if eager else nullcontext()
        with sdpa_kernel(SHAPE_AGNOSTIC_ATTENTION), stance, self._last_layer_for_the_first_token(
                encoder_inputs["attention_mask"]):
            out = self.encoder(**encoder_inputs, output_hidden_states=needs_layers)
        if pooler == "avg_first_last":
            return (out.hidden_states[1] + out.hidden_states[-1]) / 2
        if pooler == "avg_top2":
            return (out.hidden_states[-1] + out.hidden_states[-2]) / 2
        # A CUDA graph's output lives in memory that the next step reuses; pooled views of it must not outlive it.
        return out.last_hidden_state.clone() if self._graphs_replayed else out.last_hidden_state

    def _apply_mlp(self, emb: torch.Tensor, use_mlp: bool | None) -> torch.Tensor:
        if use_mlp is None:
            use_mlp = self.training or self.config.mlp_at_test
        if self.mlp is not None and use_mlp:
            emb = self.mlp(emb)
        return emb

    @torch.inference_mode()
    def encode(
        self,
        sentences: list[str],
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 256,
        max_length: int = 64,
        fill_batches: bool | None = None,
    ) -> torch.Tensor:
        """Sentences -> (n, hidden) float32 test-time embeddings, in input order.

        Tokenizes once, encodes in batches of batch_size sentences of similar length (sorted by token count, each
        padded to its own longest), on the model's device and in the weights' dtype; fp32 weights on a CUDA device
        with bf16 run under bf16 autocast (load the model in bf16 to skip autocast's casts).
        fill_batches: let batches of shorter sentences hold more of them, up to batch_size x max_length padded tokens
        (the memory bound of a full-length batch; fewer, fuller launches). Default: on CUDA, where launches cost; on
        CPU larger batches ran slower (bench/RESULTS.md).
        """
        from data_collator import SimCSECollator
        from data_loading import token_ids

        if isinstance(sentences, str):  # the tokenizer would read it as a batch of characters, or fail obscurely
            raise TypeError("sentences: a list of strings; for one sentence, pass [sentence]")
        was_training = self.training
        self.eval()
        ids = token_ids(tokenizer, sentences, max_length)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        device = next(self.parameters()).device
        cuda = device.type == "cuda"
        bf16 = cuda and self.dtype == torch.float32 and torch.cuda.is_bf16_supported()
        collate = SimCSECollator(tokenizer.pad_token_id)
        chunks = []
        fill = cuda if fill_batches is None else fill_batches
        start = 0
        while start < len(order):
            # The batch's first sentence is its longest.
            count = max(batch_size, batch_size * max_length // max(1, len(ids[order[start]]))) if fill else batch_size
            batch = collate([{"input_ids": [ids[i]]} for i in order[start : start + count]])
            start += count
            inputs = [batch[key][:, 0] for key in ("input_ids", "attention_mask")]
            # Pinned memory and asynchronous copies: the host prepares the next batch while the GPU runs this one.
            inputs = [t.pin_memory().to(device, non_blocking=True) if cuda else t.to(device) for t in inputs]
            with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                emb = self.embed(*inputs)
            chunks.append(emb.float())
        self.train(was_training)
        embeddings = torch.cat(chunks) if chunks else torch.empty(0, self.config.encoder.hidden_size, device=device)
        out = torch.empty_like(embeddings)
        out[torch.tensor(order, dtype=torch.long, device=device)] = embeddings
        return out.cpu()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        sentence_ids: torch.Tensor | None = None,
        sentence_starts: torch.Tensor | None = None,
        real_rows: int | None = None,
    ) -> SimCSEOutput:
        """input_ids, attention_mask: (batch, n, length); labels: (batch,) STS gold scores for scored pairs.

        Or a packed training batch (`SimCSECollator` with `pack_width`): input_ids, position_ids, sentence_ids of
        shape (rows, width) and sentence_starts (batch, n).
        real_rows: training rows of the whole batch that are not repeats (`contrastive_loss`); None: all.
        """
        self._new_graph_step()
        if sentence_starts is not None:
            return self._packed_forward(input_ids, position_ids, sentence_ids, sentence_starts, real_rows)
        if input_ids.dim() != 3:
            raise ValueError("input_ids must be (batch, sentences per row, length), got shape "
                             f"{tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch, n, length = input_ids.shape
        if labels is not None:
            if n != 2:
                raise ValueError(f"scored STS rows need 2 sentences, got {n}")
            emb = self.embed(input_ids.view(-1, length), attention_mask.view(-1, length)).view(batch, 2, -1)
            scores = pair_similarities(emb[:, 0], emb[:, 1])
            loss = F.mse_loss(scores[:, 0], labels.float() / 5.0)
            return SimCSEOutput(loss=loss, scores=scores)
        if n == 1:  # unsupervised: the same sentence twice in one batch, so dropout masks differ between views
            input_ids, attention_mask, n = input_ids.repeat(1, 2, 1), attention_mask.repeat(1, 2, 1), 2
        # Sentence-major order (all first sentences, then all second ...), one encoder pass for every sentence.
        flat_ids = input_ids.transpose(0, 1).reshape(-1, length)
        flat_mask = attention_mask.transpose(0, 1).reshape(-1, length)
        views = self.embed_for_training(flat_ids, flat_mask).view(n, batch, -1)
        return self._contrastive_output(views, real_rows)

    def _packed_forward(self, input_ids, position_ids, sentence_ids, sentence_starts, real_rows) -> SimCSEOutput:
        batch, n = sentence_starts.shape
        if n == 1:  # unsupervised: the rows twice, the copy holding sentences batch .. 2 * batch - 1
            sentence_starts = torch.cat([sentence_starts, sentence_starts + input_ids.numel()], dim=1)
            input_ids, position_ids = input_ids.repeat(2, 1), position_ids.repeat(2, 1)
            sentence_ids = torch.cat([sentence_ids, sentence_ids.masked_fill(sentence_ids < 0, -1 - batch) + batch])
            n = 2
        flat_starts = sentence_starts.T.reshape(-1)  # sentence-major, like the sentence ids
        views = self.embed_packed(input_ids, position_ids, sentence_ids, flat_starts).view(n, batch, -1)
        return self._contrastive_output(views, real_rows)

    def _contrastive_output(self, views: torch.Tensor, real_rows: int | None) -> SimCSEOutput:
        """views: (n, batch, hidden) embeddings of the sentences, their positives and hard negatives."""
        n = len(views)
        loss = contrastive_loss(
            views[0],
            views[1],
            views[2] if n == 3 else None,
            temperature=self.config.temperature,
            hard_negative_weight=self.config.hard_negative_weight,
            gather=self.config.gather_negatives,
            real_rows=real_rows,
        )
        return SimCSEOutput(loss=loss)

    def embed_for_training(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, recompute: bool = True
    ) -> torch.Tensor:
        """`embed` for a training step's sentences, in length-sorted pieces when `length_buckets` > 1 or
        `embedding_chunk_size` is set (training only; otherwise one pass).

        The sentences are sorted by length and split into max(length_buckets, ceil(n / embedding_chunk_size)) pieces,
        each cut to its own longest sentence, so little compute goes to padding; the embeddings come back in input
        order, and are those of one pass (the encoder ignores padding). With `embedding_chunk_size` and `recompute`,
        each piece runs under activation checkpointing: its activations are dropped after the forward pass and
        recomputed in the backward pass with the same random state (same dropout, same gradients).
        """
        size, buckets = self.config.embedding_chunk_size, self.config.length_buckets
        pieces = max(buckets, -(-len(input_ids) // size) if size else 1)
        if not self.training or pieces <= 1:
            return self.embed(input_ids, attention_mask)
        lengths = attention_mask.sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        widths = lengths[order].tolist()  # one host sync per step
        use_checkpoint = size is not None and recompute
        outputs = []
        for piece in torch.tensor_split(torch.arange(len(order), device=order.device), pieces):
            if len(piece) == 0:
                continue
            rows, width = order[piece], widths[int(piece[0])]
            ids, mask = input_ids[rows, :width], attention_mask[rows, :width]
            outputs.append(checkpoint(self.embed, ids, mask, use_reentrant=False) if use_checkpoint
                           else self.embed(ids, mask))
        embeddings = torch.cat(outputs)
        return embeddings.new_empty(embeddings.shape).index_copy(0, order, embeddings)

    # ------------------------------------------------------------------ export
    def export_encoder(
        self, out_dir: str, tokenizer: PreTrainedTokenizerBase, max_seq_length: int | None = None
    ) -> None:
        """Write the plain encoder, tokenizer and sentence-transformers files to `out_dir`.

        `AutoModel.from_pretrained(out_dir)` then loads with no newly initialised weight, and
        `EMBEDDING_RECIPES[config.simcse["embedding"]]` on its outputs, like `SentenceTransformer(out_dir).encode`,
        gives the evaluated embedding. With the MLP used at test time it is folded into the encoder's own pooler
        (dense + tanh, as the original SimCSE converter does), so `pooler_output` is the embedding.
        """
        self.check_exportable()
        encoder = copy.deepcopy(self.encoder).cpu()
        embedding = self.config.exported_embedding
        if embedding == "pooler_output":
            pooler_dense(encoder).load_state_dict(self.mlp[0].state_dict())
        encoder.config.simcse = {
            "pooler_type": self.config.pooler_type,
            "mlp_only_train": self.config.mlp_only_train,
            "embedding": embedding,
            "recipe": EMBEDDING_RECIPES[embedding],
        }
        if embedding in LAYER_POOLERS:
            encoder.config.output_hidden_states = True  # sentence-transformers pools layers only when this is set
        encoder.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        _write_sentence_transformers_files(out_dir, encoder, embedding, max_seq_length)
        _give_the_weights_the_folders_mode(out_dir)


def _write_sentence_transformers_files(out_dir: str, encoder: PreTrainedModel, embedding: str, max_seq_length) -> None:
    """Write modules.json and the module folders so `SentenceTransformer(out_dir)` reproduces `embedding`.

    sentence-transformers 6 saves them in a layout (module paths under `sentence_transformers.base`, a `pooling_mode`
    string, no `max_seq_length` in sentence_bert_config.json) that its releases before 5.4 do not load, nor do servers
    that read the older files (text-embeddings-inference takes the pooling from 1_Pooling/config.json's
    `pooling_mode_*` flags and the length from sentence_bert_config.json). The files are rewritten in the layout of
    sentence-transformers 2 to 5, which 6 loads too: releases 3.4 to 6.2 gave the evaluated embedding
    (bench/RESULTS.md), but for the layer weighting of an encoder without a pooler, which needs 4.1 (the card says
    so: hub.card.sentence_transformers_needed). The weights stay as 6 saved them (safetensors, the same keys in every
    release).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer, WeightedLayerPooling

    hidden = encoder.config.hidden_size
    modules: list[nn.Module] = [Transformer(out_dir, max_seq_length=max_seq_length)]
    layers = encoder.config.num_hidden_layers
    legacy_configs = {}  # the older layout's config.json of each module after the Transformer
    if embedding == "avg_first_last":  # hidden_states[1] and [-1], each with weight 1
        modules.append(WeightedLayerPooling(hidden, layers, layer_start=1, layer_weights=nn.Parameter(
            torch.tensor([1.0] + [0.0] * (layers - 2) + [1.0]))))
    elif embedding == "avg_top2":
        modules.append(WeightedLayerPooling(hidden, layers, layer_start=layers - 1))
    if embedding in LAYER_POOLERS:
        legacy_configs["WeightedLayerPooling"] = {"word_embedding_dimension": hidden, "num_hidden_layers": layers,
                                                  "layer_start": modules[-1].layer_start}
    cls = embedding in ("cls", "pooler_output")
    modules.append(Pooling(hidden, pooling_mode="cls" if cls else "mean"))
    legacy_configs["Pooling"] = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": cls,
                                 "pooling_mode_mean_tokens": not cls, "pooling_mode_max_tokens": False,
                                 "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                                 "pooling_mode_lasttoken": False, "include_prompt": True}
    if embedding == "pooler_output":
        dense = Dense(hidden, hidden, activation_function=nn.Tanh())
        dense.linear.load_state_dict(pooler_dense(encoder).state_dict())
        modules.append(dense)
        legacy_configs["Dense"] = {"in_features": hidden, "out_features": hidden, "bias": True,
                                   "activation_function": "torch.nn.modules.activation.Tanh"}
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(out_dir, create_model_card=False)
    # SentenceTransformer.save rewrites config.json from its own copy of the encoder config: keep ours.
    encoder.config.save_pretrained(out_dir)
    entries = _read_json(os.path.join(out_dir, "modules.json"))
    for entry, module in zip(entries, modules, strict=True):
        name = type(module).__name__
        entry["type"] = f"sentence_transformers.models.{name}"
        if name in legacy_configs:
            _write_json(os.path.join(out_dir, entry["path"], "config.json"), legacy_configs[name])
    _write_json(os.path.join(out_dir, "modules.json"), entries)
    _write_json(os.path.join(out_dir, "sentence_bert_config.json"),
                {"max_seq_length": modules[0].max_seq_length, "do_lower_case": False})
    st_config = _read_json(os.path.join(out_dir, "config_sentence_transformers.json"))
    st_config["similarity_fn_name"] = "cosine"
    _write_json(os.path.join(out_dir, "config_sentence_transformers.json"), st_config)
    _name_tokenizer_class_for_transformers_4(out_dir)


def _give_the_weights_the_folders_mode(out_dir: str) -> None:
    """Give each *.safetensors file under `out_dir` the mode of its config.json, as the umask made it. safetensors 0.8
    writes its files readable by their owner alone (0600 whatever the umask: a temporary file renamed into place,
    safetensors issue #782), so another user, a container's, could read every file of the export but its weights."""
    for root, _, names in os.walk(out_dir):
        for name in names:
            if name.endswith(".safetensors"):
                shutil.copymode(os.path.join(out_dir, "config.json"), os.path.join(root, name))


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)


def _name_tokenizer_class_for_transformers_4(out_dir: str) -> None:
    """transformers 5 saves a tokenizer of no specific class (a `tokenizer.json` pipeline, as the scratch and
    e5-small-ko tokenizers are) as class "TokenizersBackend", which transformers 4 does not know, so the export did not
    load there at all; "PreTrainedTokenizerFast" names the same tokenizer in both (transformers 5 maps it to
    TokenizersBackend). Tokenizers of a named class (BertTokenizer ...) are left as they are."""
    path = os.path.join(out_dir, "tokenizer_config.json")
    config = _read_json(path)
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        _write_json(path, config)
