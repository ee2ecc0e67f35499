"""The training loss + gradient on a mesh of fake CPU devices: ms per call and the compiled
program's all-gathers.

    python bench/sharded_step.py [--preset cpu] [--meshes 1x1x1,8x1x1,2x2x2] [--batch 16] [--calls 4]

Each mesh is data x fsdp x tensor over 8 host devices (XLA_FLAGS is set here). The devices share
this machine's cores, so the time measures the total work of all of them: a kernel that every
device runs on the whole batch costs N times what it costs split over the batch.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mobilellm_jax.training import host_memory, sharding, step as train_step  # noqa: E402
from mobilellm_jax.configs import get_config  # noqa: E402
from mobilellm_jax.model import build_model  # noqa: E402


def measure(preset: str, mesh_sizes, batch: int, calls: int) -> str:
  config = get_config(preset)
  config.train.update(mesh_data=mesh_sizes[0], mesh_fsdp=mesh_sizes[1], mesh_tensor=mesh_sizes[2])
  mesh = sharding.make_mesh(config.train, jax.devices()[:int(np.prod(mesh_sizes))])
  graphdef, params, _ = sharding.init_sharded(lambda: build_model(config.model, seed=0), mesh)
  tokens = np.random.default_rng(0).integers(0, config.model.vocab_size,
                                             (batch, config.data.seq_len + 1))
  rows = sharding.batch_sharding(mesh)
  data = {"inputs": jax.device_put(jnp.asarray(tokens[:, :-1], jnp.int32), rows),
          "targets": jax.device_put(jnp.asarray(tokens[:, 1:], jnp.int32), rows)}
  step = jax.jit(lambda p, b: train_step.loss_and_grads(p, graphdef, b, 1),
                 compiler_options=train_step.compiler_options())
  gathers = step.lower(params, data).compile().as_text().count(" all-gather(")
  loss = float(step(params, data)[0])
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(step(params, data))
    times.append(time.perf_counter() - start)
  return (f"mesh {'x'.join(map(str, mesh_sizes))}: loss {loss:.6f}, {gathers} all-gathers, "
          f"median {1000 * float(np.median(times)):.0f} ms per loss + gradient "
          f"({', '.join(f'{1000 * t:.0f}' for t in times)})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--meshes", default="1x1x1,8x1x1,2x2x2")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--calls", type=int, default=4)
  args = parser.parse_args()
  for mesh in args.meshes.split(","):
    sizes = tuple(int(x) for x in mesh.split("x"))
    if len(sizes) != 3:
      parser.error(f"--meshes: {mesh!r} is not data x fsdp x tensor, e.g. 2x2x2")
    if int(np.prod(sizes)) > jax.device_count():
      parser.error(f"--meshes: {mesh!r} needs {int(np.prod(sizes))} devices; there are "
                   f"{jax.device_count()}")
    print(measure(args.preset, sizes, args.batch, args.calls), flush=True)


if __name__ == "__main__":
  host_memory.keep_freed_memory()  # as the CLIs do (runtime.py): XLA:CPU reuses freed buffers
  main()
