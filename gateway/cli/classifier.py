"""`cliffguard classifier fit|eval` and `cliffguard classify`: the classifier from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from gateway.cli.common import err, out, settings_or_exit
from gateway.config import Settings

classifier_app = typer.Typer(help="Fit and evaluate the capability classifier.", no_args_is_help=True)

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config (for the taxonomy)")]
ArtifactOpt = Annotated[Path | None, typer.Option(help="a head written by `classifier fit` (default: the "
                                                       "config's, else fitted on the taxonomy's examples)")]


def _read_jsonl(path: Path, allowed: tuple[str, ...]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        err.print(f"[bold red]error:[/] cannot read {path}: {e.strerror}")
        raise typer.Exit(2) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, category = row["prompt"], row["category"]
            if not isinstance(prompt, str) or not isinstance(category, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            err.print(f'[bold red]error:[/] {path}:{n}: expected {{"prompt": str, "category": str}}')
            raise typer.Exit(2) from None
        if category not in allowed:
            err.print(f"[bold red]error:[/] {path}:{n}: category {category!r} is not in the taxonomy "
                      f"({', '.join(allowed)})")
            raise typer.Exit(2)
        texts.append(prompt)
        labels.append(category)
    if not texts:
        err.print(f"[bold red]error:[/] {path} holds no examples")
        raise typer.Exit(2)
    return texts, labels


def _encode(embedder: Any, texts: list[str], what: str) -> Any:
    import numpy as np

    chunks = []
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"embedding {what}", total=len(texts))
        for i in range(0, len(texts), 64):
            chunks.append(embedder.encode(texts[i:i + 64]))
            progress.advance(task, len(texts[i:i + 64]))
    return np.vstack(chunks)


def _model(settings: Settings, artifact: Path | None) -> Any:
    from gateway.classification import load_model

    return load_model(settings.classifier, artifact)


@classifier_app.command()
def fit(
    data: Path,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="where to write the artifact")] = Path(
        "classifier.npz"),
    with_examples: Annotated[bool, typer.Option(help="also learn from the taxonomy's own examples")] = True,
    config: ConfigOpt = None,
) -> None:
    """Learn from labelled prompts (JSONL: {"prompt": ..., "category": ...}); the gateway loads the result
    when `classifier.artifact` points at it."""
    from gateway.classification import shared_encoder
    from router.classify.head import Head
    from router.classify.taxonomy import Taxonomy

    settings = settings_or_exit(config)
    c = settings.classifier
    taxonomy = Taxonomy.build(c.taxonomy)
    texts, labels = _read_jsonl(data, taxonomy.names)
    if with_examples:
        ex_texts, ex_labels = taxonomy.training_set()
        texts, labels = texts + ex_texts, labels + ex_labels
    embedder = shared_encoder(c)
    head = Head.fit(_encode(embedder, texts, f"{len(texts)} prompts"), labels, embedder.name)
    head.save(out_path)
    out.print(f"[green]wrote[/] {out_path}: {len(texts)} examples, categories {', '.join(head.classes)}")


@classifier_app.command("eval")
def evaluate_cmd(
    data: Path,
    artifact: ArtifactOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOpt = None,
) -> None:
    """Accuracy, per-category precision/recall and the confusion matrix on labelled prompts."""
    from router.classify.evaluation import evaluate
    from router.classify.layers import threshold

    settings = settings_or_exit(config)
    taxonomy, model = _model(settings, artifact)
    texts, truth = _read_jsonl(data, taxonomy.names)
    X = _encode(model.embedder, texts, f"{len(texts)} prompts")
    predicted = [threshold(cat, p, settings.classifier.min_confidence).category for cat, p in model.head.predict(X)]
    report = evaluate(truth, predicted)
    if as_json:
        print(json.dumps(report))
        return
    out.print(f"accuracy [bold]{report['accuracy']:.1%}[/] on {report['n']} prompts")
    t = Table("category", "precision", "recall", "support")
    for cat, r in report["per_category"].items():
        t.add_row(cat, f"{r['precision']:.2f}", f"{r['recall']:.2f}", str(r["support"]))
    out.print(t)
    cats = list(report["per_category"])
    cm = Table("true \\ predicted", *[c[:6] for c in cats], title="confusion")
    for tcat in cats:
        row = report["confusion"].get(tcat, {})
        cm.add_row(tcat, *[(f"[bold]{row.get(p, 0)}[/]" if p == tcat else str(row.get(p, 0) or "."))
                           for p in cats])
    out.print(cm)


def classify_cmd(
    text: str,
    system: Annotated[str | None, typer.Option(help="a system prompt (rules may match it)")] = None,
    artifact: ArtifactOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Classify one prompt: category, confidence and the layer that decided."""
    from router.classify.layers import decide_before_model, threshold
    from router.classify.prompt import prompt_parts
    from router.classify.taxonomy import CompiledRules

    settings = settings_or_exit(config)
    taxonomy, model = _model(settings, artifact)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    parts = prompt_parts({"messages": messages})
    label = decide_before_model(None, CompiledRules.of(taxonomy), parts)
    if label is None:
        cat, p = model.classify([parts.classifier_text()])[0]
        label = threshold(cat, p, settings.classifier.min_confidence)
    out.print(f"category [bold cyan]{label.category}[/]  confidence {label.confidence:.2f}  layer {label.layer}")
