"""Which CPU settings change torch's numbers: a few training steps, their weights' SHA-256.

    python scripts/cpu_paths_probe.py                       # this CPU, each library's widest path
    ATEN_CPU_CAPABILITY=default python scripts/cpu_paths_probe.py
    ONEDNN_MAX_CPU_ISA=SSE41 python scripts/cpu_paths_probe.py
    MKL_CBWR=COMPATIBLE python scripts/cpu_paths_probe.py

Twenty AdamW steps of a small Qwen2 (two layers, hidden 128: matrix products, softmax, RMSNorm,
SiLU) and a 4×4 stride-4 convolution (a ViT patch embedding) on seeded random data, one thread
unless ``--threads``; prints the first 16 hex digits of the SHA-256 of every weight's bytes, the
last loss and the ATen capability in use. Two runs print the same digest exactly when they
computed the same weights bit for bit.
"""

import argparse
import hashlib

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128))
    conv = torch.nn.Conv2d(3, 16, 4, stride=4)
    optimizer = torch.optim.AdamW([*model.parameters(), *conv.parameters()], lr=1e-3)
    data = torch.Generator().manual_seed(1)
    for _ in range(args.steps):
        ids = torch.randint(0, 300, (8, 64), generator=data)
        images = torch.rand(8, 3, 32, 32, generator=data)
        loss = model(input_ids=ids, labels=ids).loss + conv(images).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    digest = hashlib.sha256()
    for tensor in [*model.state_dict().values(), *conv.state_dict().values()]:
        digest.update(tensor.detach().numpy().tobytes())
    print(digest.hexdigest()[:16], f"loss {loss.item():.10f}", f"ATen {torch.backends.cpu.get_cpu_capability()}")


if __name__ == "__main__":
    main()
