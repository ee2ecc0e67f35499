"""The MobileLLM paper's numbers as data (Liu et al., ICML 2024; ../shared/PAPER.md).

Accuracies are the average of the eight zero-shot tasks, in percent, at 0.25T tokens unless a
table says otherwise. Nothing here is a conclusion: `winner()` derives who wins from the numbers.
"""

import dataclasses

TASKS = ("arc_easy", "arc_challenge", "boolq", "piqa", "siqa", "hellaswag", "obqa", "winogrande")

# Chance accuracy of each task's multiple choice (choices per question), for context in tables.
CHANCE = dict(arc_easy=25.0, arc_challenge=25.0, boolq=50.0, piqa=50.0, siqa=100 / 3,
              hellaswag=25.0, obqa=25.0, winogrande=50.0)

# Depth vs width at a fixed parameter count: (layers, dim, avg accuracy). Two 125M and five 350M
# grid points are not reported.
DEPTH_VS_WIDTH = {
    "125M": [(4, 1280, 43.3), (12, 768, 43.9), (18, 640, 43.9), (24, 576, 44.8), (30, 512, 44.8),
             (42, 448, 44.5), (62, 384, 44.7)],
    "350M": [(5, 2048, 47.1), (15, 1280, 48.7), (32, 896, 49.8), (46, 768, 49.6),
             (66, 640, 49.5)],
}


@dataclasses.dataclass(frozen=True)
class LadderStep:
  key: str  # stable id: a ladder sweep's PAPER_STEPS maps its run labels to these
  name: str  # the paper's wording
  acc_125m: float
  acc_350m: float


# The ablation ladder (0.25T tokens), in the paper's order; each step adds to the previous one.
ABLATION_LADDER = (
    LadderStep("baseline", "baseline, 12-layer-style, FC-ReLU-FC FFN", 42.6, 47.4),
    LadderStep("swiglu", "+ SwiGLU", 43.9, 48.7),
    LadderStep("deep_thin", "+ deep and thin", 44.8, 49.8),
    LadderStep("embedding_sharing", "+ embedding sharing", 44.6, 49.2),
    LadderStep("gqa", "+ GQA (+ wider to keep the size) = MobileLLM", 45.0, 49.9),
    LadderStep("layer_sharing", "+ immediate layer sharing = MobileLLM-LS", 46.1, 51.0),
)
LADDER_1T = {"MobileLLM": (46.3, 51.3), "MobileLLM-LS": (47.0, 52.1)}  # (125M, 350M) at 1T tokens

# Embedding sharing at 125M: (description, params, avg accuracy).
EMBEDDING_SHARING = (
    ("untied", "30 layers, separate input and output embeddings", 135e6, 44.8),
    ("tied", "30 layers, shared embedding", 119e6, 44.6),
    ("tied_deeper", "32 layers, shared embedding (params spent on depth)", 125e6, 45.0),
)

# Layer-sharing strategies at 2 repeats; 125M reports only two of them.
LAYER_SHARING = {
    "350M": {"none": 49.6, "immediate": 50.2, "repeat_all": 50.7, "reverse": 50.1},
    "125M": {"immediate": 45.0, "repeat_all": 45.2},
}

# Repeat count: the paper gives no table, only that 2x gains 0.4-0.6 points over no sharing and
# more repeats give diminishing returns.
REPEAT_COUNT_GAIN_2X = (0.4, 0.6)
REPEAT_COUNT_NOTE = "2x: +0.4 to +0.6 points; 3x and 4x: diminishing returns (no table given)"

# Attention heads (125M): only qualitative statements.
HEADS_NOTE = ("16 query heads (head_dim 64) best; reducing KV heads 16 -> 4 is about neutral at "
              "125M (GQA's saved parameters go into width)")

# Final models at 1T tokens: per-task accuracy and the average.
FINAL_MODELS = {
    "125M": dict(arc_easy=43.9, arc_challenge=27.1, boolq=60.2, piqa=65.3, siqa=42.4,
                 hellaswag=38.9, obqa=39.5, winogrande=53.1, avg=46.3),
    "LS-125M": dict(arc_easy=45.8, arc_challenge=28.7, boolq=60.4, piqa=65.7, siqa=42.9,
                    hellaswag=39.5, obqa=41.1, winogrande=52.1, avg=47.0),
    "350M": dict(arc_easy=53.8, arc_challenge=33.5, boolq=62.4, piqa=68.6, siqa=44.7,
                 hellaswag=49.6, obqa=40.0, winogrande=57.6, avg=51.3),
    "LS-350M": dict(arc_easy=54.4, arc_challenge=32.5, boolq=62.8, piqa=69.8, siqa=44.1,
                    hellaswag=50.6, obqa=45.8, winogrande=57.2, avg=52.1),
    "600M": dict(arc_easy=58.1, arc_challenge=35.8, boolq=61.0, piqa=72.3, siqa=44.9,
                 hellaswag=55.9, obqa=47.9, winogrande=58.6, avg=54.3),
    "1B": dict(arc_easy=63.0, arc_challenge=39.0, boolq=66.7, piqa=74.4, siqa=45.0,
               hellaswag=61.4, obqa=46.8, winogrande=62.3, avg=57.3),
    "1.5B": dict(arc_easy=67.5, arc_challenge=40.9, boolq=65.7, piqa=74.8, siqa=46.4,
                 hellaswag=64.5, obqa=50.5, winogrande=64.7, avg=59.4),
}
# Which of our presets is which released model (configs/presets.py names).
PRESET_TO_FINAL_MODEL = {"mobilellm_125m": "125M", "mobilellm_125m_ls": "LS-125M",
                         "mobilellm_350m": "350M", "mobilellm_350m_ls": "LS-350M",
                         "mobilellm_600m": "600M", "mobilellm_1b": "1B", "mobilellm_1_5b": "1.5B"}
BASELINES = {"OPT-125M": 42.6, "GPT-neo-125M": 42.9, "Pythia-160M": 42.5, "OPT-350M": 43.9,
             "Pythia-410M": 46.6}

# Released architectures: layers, dim, heads, KV heads, FFN hidden, params (tied), non-embedding.
ARCHITECTURES = {
    "125M": (30, 576, 9, 3, 1536, 124_635_456, 106_203_456),
    "350M": (32, 960, 15, 5, 2560, 345_355_200, 314_635_200),
    "600M": (40, 1152, 18, 6, 3072, 603_188_352, 566_324_352),
    "1B": (54, 1280, 20, 5, 3584, 1_005_461_760, 964_501_760),
    "1.5B": (54, 1600, 25, 5, 4352, 1_511_188_800, 1_459_988_800),
}


@dataclasses.dataclass(frozen=True)
class PaperResult:
  """Who wins one of the paper's comparisons, and by how much (accuracy points)."""
  setting: str
  winner: str
  reference: str
  margin: float  # winner's accuracy minus the reference's

  def __str__(self) -> str:
    return f"paper ({self.setting}): {self.winner} beat {self.reference} by {self.margin:+.1f} points"


def depth_result(size: str) -> PaperResult:
  """Best depth (ties listed together) vs the shallowest in the paper's grid at `size`."""
  grid = DEPTH_VS_WIDTH[size]
  top = max(acc for _, _, acc in grid)
  best = [row for row in grid if row[2] == top]
  shallow = min(grid)
  layers = "/".join(str(row[0]) for row in best)
  dims = "/".join(str(row[1]) for row in best)
  return PaperResult(size, f"{layers} layers (dim {dims}, {top:.1f})",
                     f"{shallow[0]} layers (dim {shallow[1]}, {shallow[2]:.1f})", top - shallow[2])


def sharing_result(size: str) -> PaperResult:
  """Most accurate layer-sharing strategy vs no sharing (or the runner-up where none is known)."""
  table = LAYER_SHARING[size]
  best = max(table, key=table.get)
  reference = "none" if "none" in table else min(table, key=table.get)
  return PaperResult(size, f"{best} ({table[best]:.1f})", f"{reference} ({table[reference]:.1f})",
                     table[best] - table[reference])


def ladder_result(size: str) -> PaperResult:
  """The whole ladder: its last step against the baseline."""
  first, last = ABLATION_LADDER[0], ABLATION_LADDER[-1]
  acc = lambda step: getattr(step, f"acc_{size.lower()}")
  return PaperResult(size, f"{last.name} ({acc(last):.1f})", f"baseline ({acc(first):.1f})",
                     acc(last) - acc(first))


def embedding_result() -> PaperResult:
  """The most accurate embedding-sharing variant against the untied model (125M)."""
  rows = {key: (description, acc) for key, description, _, acc in EMBEDDING_SHARING}
  best = max(rows, key=lambda key: rows[key][1])
  return PaperResult("125M", f"{best}: {rows[best][0]} ({rows[best][1]:.1f})",
                     f"untied ({rows['untied'][1]:.1f})", rows[best][1] - rows["untied"][1])


def ladder_deltas(size: str = "125M") -> dict[str, float]:
  """Each ladder step's change in accuracy over the previous step (first step: 0)."""
  accs = [getattr(step, f"acc_{size.lower()}") for step in ABLATION_LADDER]
  return {step.key: (0.0 if i == 0 else round(accs[i] - accs[i - 1], 1))
          for i, step in enumerate(ABLATION_LADDER)}
