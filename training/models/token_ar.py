"""The autoregressive token generator of Li et al. 2023 §2.3: a GPT-2 over codebook indices, conditioned on text.

    model = TokenGPT(codebook_size=1024, sequence_length=250, text_dim=768, text_tokens=30, n_layer=24, n_head=16, n_embd=1024)
    logits = model(states, mask, sequence)           # teacher forcing: [B, N, K], logits[:, i] predicts s_i
    sequence = sample_tokens(model, states, mask, N, top_k=512, generators=[...])

The GPT-2 is transformers' GPT2LMHeadModel (§3.2: "a GPT2-based architecture … hidden dimension of 1024",
output "a 1024-way classifier ending with Softmax"). The text features F_text (L ≤ 30 hidden states of a
frozen encoder, training/models/text_features.py) are projected to the model width and form a prefix;
p(s | F_text) = Π_i p(s_i | s_<i, F_text) (eq. 5) is read at the prefix's last position and after, and the
loss is its negative log-likelihood (eq. 6). The sequence is the token grid flattened column-major
(training/models/vq.py: each time column's frequency codes in turn). Sampling clips the next-token
distribution to its top K (§3.2: K = 512) and, when `guidance` ≠ 1, mixes conditional and unconditional
(text "") log-probabilities: u + w·(c − u) (classifier-free guidance, an option here; the paper has none).
Each item draws from its own generator, so a sample depends on its seed only. Word embeddings and the
classifier are not tied (safetensors stores no shared tensors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn


class TokenGPT(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        codebook_size: int = 1024,
        sequence_length: int = 250,
        text_dim: int = 768,
        text_tokens: int = 30,
        n_layer: int = 24,
        n_head: int = 16,
        n_embd: int = 1024,
        dropout: float = 0.1,
    ):
        super().__init__()
        config = transformers.GPT2Config(
            vocab_size=codebook_size,
            n_positions=text_tokens + sequence_length,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=None,
        )
        self.gpt = transformers.GPT2LMHeadModel(config)
        self.text_proj = nn.Linear(text_dim, n_embd)

    def forward(self, states: Tensor, mask: Tensor, sequence: Tensor) -> Tensor:
        """Teacher forcing: [B, N, K] logits; position i predicts sequence[:, i] from the text and sequence[:, :i]."""
        prefix = self.text_proj(states)
        inputs = torch.cat([prefix, self.gpt.transformer.wte(sequence[:, :-1])], dim=1)
        attention = torch.cat([mask, mask.new_ones(sequence.shape[0], sequence.shape[1] - 1)], dim=1)
        logits = self.gpt(inputs_embeds=inputs, attention_mask=attention).logits
        return logits[:, prefix.shape[1] - 1 :]


def ar_loss(model: nn.Module, states: Tensor, mask: Tensor, sequence: Tensor) -> Tensor:
    """Li et al. 2023 eq. 6: −log p(s | F_text), averaged over tokens (nats per token)."""
    logits = model(states, mask, sequence)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), sequence.reshape(-1))


def top_k_draw(logits: Tensor, top_k: int, generators: list[torch.Generator]) -> Tensor:
    """One index per row from softmax(logits) restricted to its top_k entries; row i draws from generators[i]."""
    k = min(top_k, logits.shape[-1])
    values, indices = logits.float().topk(k, dim=-1)
    probs = values.softmax(-1).cpu()
    picks = torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
    return indices.gather(1, picks.to(indices.device)).squeeze(1)


@torch.no_grad()
def sample_tokens(
    model: TokenGPT,
    states: Tensor,
    mask: Tensor,
    length: int,
    *,
    top_k: int,
    generators: list[torch.Generator],
    guidance: float = 1.0,
    null: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Autoregressive sampling with the key/value cache → [B, length] indices."""
    guided = guidance != 1.0 and null is not None
    if guided:
        states, mask = torch.cat([states, null[0].to(states)]), torch.cat([mask, null[1].to(mask)])
    gpt, rows = model.gpt, len(generators)
    attention = mask
    out = gpt(inputs_embeds=model.text_proj(states), attention_mask=attention, use_cache=True)
    tokens = []
    for _ in range(length):
        logits = out.logits[:, -1].float().log_softmax(-1)
        if guided:
            cond, uncond = logits[:rows], logits[rows:]
            logits = uncond + guidance * (cond - uncond)
        chosen = top_k_draw(logits, top_k, generators)
        tokens.append(chosen)
        step = torch.cat([chosen, chosen]) if guided else chosen
        attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
        out = gpt(
            inputs_embeds=gpt.transformer.wte(step)[:, None],
            attention_mask=attention,
            cache=out.cache,
            use_cache=True,
        )
    return torch.stack(tokens, dim=1)
