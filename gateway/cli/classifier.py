"""`cliffguard classifier fit|eval` and `cliffguard classify`: the classifier from the command line.

Labelled files are JSONL with `"category"` and either `"prompt"` (one prompt) or `"messages"` (an
OpenAI conversation, classified as the gateway sees it: system prompt and user turns)."""

from __future__ import annotations

import json
import sys
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
                                                       "config's, else fitted on the taxonomy's training set)")]
ROW_SHAPE = '{"prompt": str, "category": str} or {"messages": [{"role": str, "content": str}, ...], "category": str}'


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def _body(row: Any) -> dict[str, Any]:
    """The request body a labelled row stands for; raises TypeError on a malformed row."""
    if not isinstance(row, dict) or not isinstance(row.get("category"), str):
        raise TypeError
    if isinstance(row.get("prompt"), str):
        return {"messages": [{"role": "user", "content": row["prompt"]}]}
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str | list)
            for m in msgs) or not any(m["role"] == "user" for m in msgs):
        raise TypeError
    return {"messages": msgs}


def read_rows(path: Path, allowed: tuple[str, ...]) -> list[tuple[dict[str, Any], str]]:
    """(request body, category) per line of a labelled JSONL file; exit 2 with the line on bad input."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise _fail(f"cannot read {path}: {e.strerror}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            body = _body(row)
        except (ValueError, TypeError):
            raise _fail(f"{path}:{n}: expected {ROW_SHAPE}") from None
        if row["category"] not in allowed:
            raise _fail(f"{path}:{n}: category {row['category']!r} is not in the taxonomy ({', '.join(allowed)})")
        rows.append((body, row["category"]))
    if not rows:
        raise _fail(f"{path} holds no examples")
    return rows


def _model(settings: Settings, artifact: Path | None) -> Any:
    from gateway.classification import load_model

    with err.status("loading the classifier (the first run distils the encoder and fits the head)"):
        return load_model(settings.classifier, artifact)


@classifier_app.command()
def fit(
    data: Path,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="where to write the artifact")] = Path(
        "classifier.npz"),
    with_examples: Annotated[bool, typer.Option(help="also learn from the taxonomy's training set")] = True,
    config: ConfigOpt = None,
) -> None:
    """Learn from labelled prompts and conversations (JSONL); the gateway loads the result when
    `classifier.artifact` points at it."""
    from gateway.classification import shared_encoder
    from router.classify import training
    from router.classify.corpus import Example
    from router.classify.evaluation import row_kind
    from router.classify.taxonomy import Taxonomy

    settings = settings_or_exit(config)
    c = settings.classifier
    taxonomy = Taxonomy.build(c.taxonomy)
    examples = []
    for n, (body, category) in enumerate(read_rows(data, taxonomy.names)):
        msgs = tuple((m["role"], _content(m["content"])) for m in body["messages"])
        examples.append(Example(msgs, category, f"{data.name}:{n}", row_kind([r for r, _ in msgs])))
    if with_examples:
        examples += taxonomy.training_set()
    embedder = shared_encoder(c)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"fitting on {len(examples)} examples", total=None)
        try:
            head = training.fit(examples, embedder,
                                progress=lambda step: progress.update(task, description=f"fitting: {step}"))
        except ValueError as e:
            raise _fail(str(e)) from None
    head.save(out_path)
    out.print(f"[green]wrote[/] {out_path}: {len(examples)} examples, categories {', '.join(head.classes)}")


def _content(content: Any) -> str:
    from router.classify.prompt import prompt_parts

    return prompt_parts({"messages": [{"role": "user", "content": content}]}).last_user


def label_rows(settings: Settings, model: Any, taxonomy: Any, bodies: list[dict[str, Any]]) -> list[Any]:
    """(final label, model's top category, model's confidence) per request body, as the gateway labels it:
    rules first, then the model, then the threshold."""
    from router.classify.layers import decide_before_model, threshold
    from router.classify.prompt import prompt_parts
    from router.classify.taxonomy import CompiledRules

    rules = CompiledRules.of(taxonomy)
    parts = [prompt_parts(b) for b in bodies]
    results = []
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"classifying {len(bodies)} rows", total=len(bodies))
        for i in range(0, len(parts), 64):
            chunk = parts[i:i + 64]
            for p, (cat, conf) in zip(chunk, model.classify([p.model_parts() for p in chunk]), strict=True):
                label = decide_before_model(None, rules, p) or threshold(cat, conf, settings.classifier.min_confidence)
                results.append((label, cat, conf))
            progress.advance(task, len(chunk))
    return results


@classifier_app.command("eval")
def evaluate_cmd(
    data: Path,
    artifact: ArtifactOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    config: ConfigOpt = None,
) -> None:
    """Accuracy, per-category precision/recall, confusion and calibration, overall and separately for
    single prompts and conversations (rows with more than one user turn, or a system prompt)."""
    from router.classify.evaluation import report, row_kind

    settings = settings_or_exit(config)
    taxonomy, model = _model(settings, artifact)
    rows = read_rows(data, taxonomy.names)
    bodies = [b for b, _ in rows]
    labelled = label_rows(settings, model, taxonomy, bodies)
    kinds = [row_kind([m["role"] for m in b["messages"]]) for b in bodies]
    r = report(kinds, [c for _, c in rows], [lb.category for lb, _, _ in labelled], [c for _, c, _ in labelled],
               [p for _, _, p in labelled])
    result = {**r["all"], "by_kind": {k: v for k, v in r.items() if k != "all"}}
    if as_json:
        print(json.dumps(result))
        return
    _print_report(data.name, r)


def _print_report(name: str, r: dict[str, Any]) -> None:
    t = Table("rows", "n", "accuracy", "calibration error", title=f"{name}")
    for kind, rep in r.items():
        t.add_row(kind, str(rep["n"]), f"[bold]{rep['accuracy']:.1%}[/]", f"{rep['calibration']['ece']:.3f}")
    out.print(t)
    for kind, rep in r.items():
        if kind == "all" and len(r) == 2:
            continue  # one kind only: its tables are the same as the overall ones
        cats = list(rep["per_category"])
        pc = Table("category", "precision", "recall", "support", title=f"{kind}: per category")
        for cat, v in rep["per_category"].items():
            pc.add_row(cat, f"{v['precision']:.2f}", f"{v['recall']:.2f}", str(v["support"]))
        cm = Table("true \\ predicted", *[c[:6] for c in cats], title=f"{kind}: confusion")
        for tcat in cats:
            row = rep["confusion"].get(tcat, {})
            cm.add_row(tcat, *[(f"[bold]{row.get(p, 0)}[/]" if p == tcat else str(row.get(p, 0) or "."))
                               for p in cats])
        cal = Table("confidence", "n", "accuracy", "mean confidence",
                    title=f"{kind}: calibration (model's top category)")
        for b in rep["calibration"]["buckets"]:
            cal.add_row(f"{b['from']:.2f}-{b['to']:.2f}", str(b["n"]), f"{b['accuracy']:.1%}",
                        f"{b['mean_confidence']:.2f}")
        out.print(pc, cm, cal)


def classify_cmd(
    text: Annotated[str | None, typer.Argument(help="the prompt (or use --messages)")] = None,
    system: Annotated[str | None, typer.Option(help="a system prompt (rules may match it)")] = None,
    messages: Annotated[str | None, typer.Option(
        help="a JSON file (or - for stdin) holding an OpenAI messages list, or a body with `messages`")] = None,
    artifact: ArtifactOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Classify one prompt or conversation: category, confidence and the layer that decided."""
    if (text is None) == (messages is None):
        raise _fail("give exactly one of: a prompt, or --messages FILE|-")
    if messages is not None:
        try:
            raw = json.loads(sys.stdin.read() if messages == "-" else Path(messages).read_text())
            body = _body({"messages": raw.get("messages") if isinstance(raw, dict) else raw, "category": ""})
        except OSError as e:
            raise _fail(f"cannot read {messages}: {e.strerror}") from None
        except (ValueError, TypeError):
            raise _fail(f"{messages}: expected a JSON list of {{\"role\", \"content\"}} messages with a user turn, "
                        "or an object with one under `messages`") from None
    else:
        body = {"messages": ([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": text}]}
    settings = settings_or_exit(config)
    taxonomy, model = _model(settings, artifact)
    label, _, _ = label_rows(settings, model, taxonomy, [body])[0]
    out.print(f"category [bold cyan]{label.category}[/]  confidence {label.confidence:.2f}  layer {label.layer}")
