"""Write the notebooks in notebooks/ (sources only; outputs are never committed).

Run: python tools/make_notebooks.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks"

SETUP = """import torch, warnings
import matplotlib.pyplot as plt
torch.set_num_threads(2)
warnings.filterwarnings("ignore")"""

NOTEBOOKS = {
    "01_quickstart.ipynb": [
        ("md", "# clipaudit quick start\nLoad the embedded toy CLIP, classify a scene, read the model like an auditor."),
        ("code", SETUP),
        ("code", """from clipaudit import load_model, resolve_layer, capture, neurons
from clipaudit.toy.world import World, OBJECT_CLASSES, scenes_to_pixels
model = load_model("toy")
print(model.describe())"""),
        ("md", "## The seed deck's example, on the toy: an apple, then an apple labelled *ipod*"),
        ("code", """world = World(seed=42)
scenes = [world.scene(0, "object", label="apple", text=False), world.scene(0, "object", label="apple", word="ipod")]
pixels = scenes_to_pixels(scenes)
head = model.classifier(list(OBJECT_CLASSES))
probs = head(pixels).softmax(-1)
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for i, sc in enumerate(scenes):
    axes[2 * i].imshow(sc.image); axes[2 * i].axis("off")
    top = probs[i].topk(5)
    axes[2 * i + 1].barh([OBJECT_CLASSES[j] for j in top.indices.tolist()][::-1], top.values.tolist()[::-1])
plt.tight_layout()
print("apple ->", OBJECT_CLASSES[probs[0].argmax()], "| apple + 'ipod' ->", OBJECT_CLASSES[probs[1].argmax()])"""),
        ("md", "## Neurons of the penultimate layer"),
        ("code", """layer = resolve_layer(model, "penultimate")
with capture(model, layer) as acts:
    model.encode_images(pixels)
per_neuron = neurons(acts[layer.path], layer.layout)
print(layer, per_neuron.shape)
print("most active neurons on the labelled apple:", per_neuron[1].topk(5).indices.tolist())"""),
    ],
    "02_neurons.ipynb": [
        ("md", "# Neurons: scan, labels, multimodality, feature visualisation"),
        ("code", SETUP),
        ("code", """from clipaudit import load_model, open_source
from clipaudit.probes import NeuronsConfig, audit
model = load_model("toy")
config = NeuronsConfig(top=4, steps=32, k=20, attribution_images=2, n_words=6, n_pictures=6)
result = audit(model, open_source("toy", n=256), config)
result.summary"""),
        ("code", """table = result.tables["neurons"]
table.sort_values("multimodal_score", ascending=False).head(8)[["neuron", "label", "label_score", "multimodal_score", "is_multimodal"]]"""),
        ("code", """featvis = [name for name in result.images if name.startswith("featvis_")]
fig, axes = plt.subplots(1, len(featvis), figsize=(3 * len(featvis), 3), squeeze=False)
for ax, name in zip(axes[0], featvis):
    ax.imshow(result.images[name]); ax.set_title(name); ax.axis("off")"""),
    ],
    "03_attacks.ipynb": [
        ("md", "# Attacks: typographic and adversarial"),
        ("code", SETUP),
        ("code", """from clipaudit import load_model, toy_source
from clipaudit.attacks import TypographicConfig, typographic_audit, AdversarialConfig, adversarial_audit
model = load_model("toy")
clean_objects = toy_source(64, seed=7, kind="object", text=False)
typo = typographic_audit(model, clean_objects, TypographicConfig(target="pizza", n_resamples=500))
{k: typo.summary[k] for k in ("target", "n_images", "attack_success_rate", "attack_success_ci", "flip_rate")}"""),
        ("code", """typo.images["typographic_examples"]"""),
        ("code", """adv = adversarial_audit(model, toy_source(16, seed=8, kind="object", text=False),
                        AdversarialConfig(eps=4/255, steps=5, sanity_n=8, eps_sweep=(0.0, 2/255, 4/255)))
adv.tables["adversarial_curve"]"""),
    ],
    "04_bias.ipynb": [
        ("md", "# Bias probes on the toy's people\nThe toy planted a crime-word skew on skin `tone1` and none on `hair` (the control)."),
        ("code", SETUP),
        ("code", """from clipaudit import load_model
from clipaudit.bias import BiasConfig, audit, open_dataset
model = load_model("toy")
config = BiasConfig(bootstrap=500, permutations=500)
result = audit(model, open_dataset("toy:300"), config)
result.tables["bias_denigration"]"""),
        ("code", """den = result.tables["bias_denigration"]
skin = den[den["attribute"] == "skin"]
plt.errorbar(skin["group"], skin["rate"], yerr=[skin["rate"] - skin["ci_low"], skin["ci_high"] - skin["rate"]], fmt="o")
plt.ylabel("harmful-label rate"); plt.title("toy: harmful-label rate by skin tone (95% CI)")"""),
        ("code", """result.tables["bias_weat"]"""),
    ],
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, OUT / name)


if __name__ == "__main__":
    main()
