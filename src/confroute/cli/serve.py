"""``confroute serve CONFIG``: serve a router on Ray Serve from a YAML or TOML file.

The file names the stages (a local model as ``BACKEND:PATH``, as in ``confroute evaluate``, or a
remote model server by URL over the Open Inference Protocol), the thresholds (or a saved threshold
choice), the failure policies and each stage's Ray Serve deployment options. The format is
documented, with an example, in ``docs/serving.md``; :func:`load_config` reads it,
:func:`build_router` builds the router it describes and :func:`app_from_config` the Ray Serve
application.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..exceptions import CLIError

__all__ = ["load_config", "check_config", "check_cpus", "build_router", "app_from_config", "add_serve_parser",
           "run_serve", "audit_options", "AUDIT_KEYS"]

_TOP = {"name", "engine", "http", "ray", "stages", "thresholds", "thresholds_from", "score", "cost", "drift", "ingress",
        "allow_pickle", "audit"}
_LOCAL = {"name", "model", "threads", "batch_size", "max_length", "classes", "device", "fallback", "deployment"}
_REMOTE = {"name", "url", "model_name", "version", "classes", "output", "input_name", "output_name",
           "batch_size", "timeout", "connect_timeout", "max_connections", "headers", "binary", "fallback",
           "deployment"}
_FALLBACK = {"on_error", "retries", "backoff", "max_backoff", "jitter", "timeout", "split_on_failure",
             "batch_size", "max_concurrency", "circuit_breaker"}
_BREAKER = {"failure_threshold", "reset_after"}
#: ``audit:`` keys and the CertificateMonitor argument each one gives (``deployment``: Ray Serve
#: options of the audit replica).
AUDIT_KEYS = {"target_relative_accuracy": "target_relative_accuracy", "max_accuracy_drop": "max_accuracy_drop",
              "target_accuracy": "target_accuracy", "target_agreement": "target_agreement", "delta": "delta",
              "rate": "audit_rate", "ledger": "ledger", "sink": "label_sink", "policy": "policy",
              "looser": "looser", "shadow_concurrency": "shadow_concurrency", "stream": "stream",
              "random_state": "random_state", "agreement_rate": "agreement_rate", "reference": "reference",
              "ladder": "ladder", "max_shadow_backlog": "max_shadow_backlog", "check_every": "check_every",
              "sync_interval_s": "sync_interval_s"}
_TARGETS = ("target_relative_accuracy", "max_accuracy_drop", "target_accuracy", "target_agreement")
_DRIFT = {"reference_scores", "every", "window", "min_samples", "n_bins", "psi_alert", "ks_alpha",
          "rate_alpha", "rate_tolerance", "due_on"}


def load_config(path: str | Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml`` or ``.toml`` config and check it (see :func:`check_config`).

    Relative model, threshold and drift paths are resolved against the file's folder.
    ``allow_pickle=True`` (``confroute serve --allow-pickle``) has the effect of the config key
    ``allow_pickle: true``: ``sklearn:``/``joblib:`` stages (pickles, which run any code inside
    them when loaded) are refused without one of the two.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CLIError(f"config: no such file: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise CLIError("YAML configs need PyYAML: pip install 'confroute[serve]' (or write TOML)") from None
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CLIError(f"config {path}: not valid YAML ({exc})") from None
    elif path.suffix.lower() == ".toml":
        import tomllib

        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CLIError(f"config {path}: not valid TOML ({exc})") from None
    else:
        raise CLIError(f"config {path}: use a .yaml, .yml or .toml file")
    return check_config(cfg, base=path.parent, allow_pickle=allow_pickle)


def _unknown(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    bad = sorted(set(section) - allowed)
    if bad:
        raise CLIError(f"config {where}: unknown keys {bad}; allowed: {sorted(allowed)}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CLIError(f"config {where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _resolve(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def check_config(cfg: Any, base: str | Path = ".", allow_pickle: bool = False) -> dict[str, Any]:
    """Validate a config (a parsed YAML/TOML document); return it with paths made absolute.

    Raises :class:`~confroute.exceptions.CLIError` naming the key at fault. A pickled model
    (``sklearn:``/``joblib:``) needs ``allow_pickle: true`` in the config or ``allow_pickle=True``
    (``--allow-pickle``); the drift reference file must exist and the HTTP port be a port number.

    Examples
    --------
    >>> cfg = check_config({"stages": [{"name": "a", "model": "onnx:/m/a"},
    ...                                {"name": "b", "url": "http://gpu:8080", "classes": ["n", "p"]}],
    ...                     "thresholds": [0.9]})
    >>> [s["name"] for s in cfg["stages"]], cfg["thresholds"]
    (['a', 'b'], [0.9])
    >>> check_config({"stages": [{"name": "a", "model": "onnx:/m"}, {"name": "b", "model": "onnx:/n"}]})
    Traceback (most recent call last):
    ...
    confroute.exceptions.CLIError: config: give thresholds (one per stage but the last) or thresholds_from
    """
    base = Path(base)
    cfg = _mapping(cfg, "(top level)")
    _unknown(cfg, _TOP, "(top level)")
    if not isinstance(cfg.get("allow_pickle", False), bool):
        raise CLIError(f"config allow_pickle must be true or false, got {cfg['allow_pickle']!r}")
    cfg["allow_pickle"] = bool(allow_pickle or cfg.get("allow_pickle", False))
    stages = cfg.get("stages")
    if not isinstance(stages, list) or not stages:
        raise CLIError("config: 'stages' must be a non-empty list, cheapest first")
    out_stages = [_check_stage(stage, f"stages[{i}]", base) for i, stage in enumerate(stages)]
    names = [s["name"] for s in out_stages]
    if len(set(names)) != len(names):
        raise CLIError(f"config: stage names must be distinct, got {names}")
    cfg["stages"] = out_stages
    _check_pickles(out_stages, cfg["allow_pickle"])
    cfg["thresholds"] = _check_thresholds(cfg, len(out_stages), base)
    cost = _mapping(cfg.get("cost"), "cost")
    _unknown(cost, {"per_sample", "hourly"}, "cost")
    if len(cost) > 1:
        raise CLIError("config cost: give per_sample or hourly, not both")
    for key, value in cost.items():
        if not isinstance(value, list) or len(value) != len(out_stages):
            raise CLIError(f"config cost.{key}: give one entry per stage ({len(out_stages)})")
    drift = _mapping(cfg.get("drift"), "drift")
    _unknown(drift, _DRIFT, "drift")
    if drift:
        if "reference_scores" not in drift:
            raise CLIError("config drift: give reference_scores (the first stage's calibration scores, .npy or .txt)")
        drift["reference_scores"] = _resolve(str(drift["reference_scores"]), base)
        if not Path(drift["reference_scores"]).is_file():
            raise CLIError(f"config drift.reference_scores: no such file: {drift['reference_scores']}")
    cfg["drift"] = drift or None
    cfg["http"] = _check_http(_mapping(cfg.get("http"), "http"))
    ray_cfg = _mapping(cfg.get("ray"), "ray")
    _unknown(ray_cfg, {"address", "namespace", "num_cpus", "num_gpus"}, "ray")
    cfg["ray"] = ray_cfg
    cfg["ingress"] = _mapping(cfg.get("ingress"), "ingress")
    cfg["audit"] = _check_audit(_mapping(cfg.get("audit"), "audit"), cfg, base) if cfg.get("audit") else None
    cfg.setdefault("name", "confroute")
    cfg["engine"] = _check_engine(cfg, cfg.get("engine", "ray"))
    return cfg


def _check_engine(cfg: dict[str, Any], engine: Any) -> str:
    """``engine``: ``ray`` (Ray Serve, the default) or ``local`` (one process, no Ray), whose
    config may hold no Ray-only key (each refused by name)."""
    if engine not in ("ray", "local"):
        raise CLIError(f"config engine must be 'ray' (Ray Serve) or 'local' (one process, no Ray), got {engine!r}")
    if engine == "local":
        from ..integrations.serve import BATCH_OPTIONS

        ray_only = [k for k in ("ray", "ingress", "audit") if cfg.get(k)]
        ray_only += [f"stages[{i}].deployment.{k}" for i, s in enumerate(cfg["stages"])
                     for k in s["deployment"] if k not in BATCH_OPTIONS]
        if ray_only:
            raise CLIError(f"config: {', '.join(ray_only)} need engine: ray; engine: local runs one copy of each "
                           f"stage in this process (a stage's deployment takes only {', '.join(BATCH_OPTIONS)}): "
                           "remove them or set engine: ray")
    return str(engine)


def _number(audit: dict[str, Any], key: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> None:
    """``audit[key]`` (when given) a number in the interval; a CLIError naming ``audit.key`` otherwise."""
    if key not in audit:
        return
    x = audit[key]
    inside = (isinstance(x, (int, float)) and not isinstance(x, bool) and (lo < x if lo_open else lo <= x)
              and (x < hi if hi_open else x <= hi))
    if not inside:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise CLIError(f"config audit.{key} must be a number in {interval}, got {x!r}")


def _check_audit(audit: dict[str, Any], cfg: dict[str, Any], base: Path) -> dict[str, Any]:
    """``audit``: the audit loop (a CertificateMonitor in one replica); paths made absolute."""
    from ..integrations.serve_audit import SERVING_LOOSER, SERVING_POLICIES

    _unknown(audit, set(AUDIT_KEYS) | {"deployment"}, "audit")
    targets = [k for k in _TARGETS if k in audit]
    if len(targets) != 1:
        raise CLIError(f"config audit: give exactly one target of {list(_TARGETS)}, got {targets or 'none'}")
    if len(cfg["stages"]) != 2:
        raise CLIError(f"config audit: the audit loop watches two stages, this config has {len(cfg['stages'])}")
    t = cfg["thresholds"][0]
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise CLIError(f"config audit: the audit loop certifies one global threshold; thresholds[0] is {t!r}")
    for key, lo, hi, lo_open, hi_open in (
            ("target_relative_accuracy", 0, 1, True, False), ("target_accuracy", 0, 1, True, True),
            ("target_agreement", 0, 1, True, False), ("max_accuracy_drop", 0, 1, False, True),
            ("delta", 0, 1, True, True), ("rate", 0, 1, True, False), ("agreement_rate", 0, 1, False, False),
            ("reference", 0, 1, False, False)):
        _number(audit, key, lo, hi, lo_open, hi_open)
    for key, least in (("shadow_concurrency", 1), ("max_shadow_backlog", 1), ("check_every", 0)):
        x = audit.get(key, least)
        if isinstance(x, bool) or not isinstance(x, int) or x < least:
            raise CLIError(f"config audit.{key} must be an integer >= {least}, got {x!r}")
    x = audit.get("sync_interval_s", 1.0)
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < float("inf"):
        raise CLIError(f"config audit.sync_interval_s must be a number of seconds > 0, got {x!r}")
    for key, allowed in (("policy", SERVING_POLICIES), ("looser", SERVING_LOOSER)):
        if audit.get(key, allowed[0]) not in allowed:
            raise CLIError(f"config audit.{key} must be one of {list(allowed)}, got {audit[key]!r}")
    if not isinstance(audit.get("ledger"), str) or not audit["ledger"]:
        raise CLIError("config audit.ledger: give a SQLite file (e.g. audit.sqlite) or a postgresql:// URL")
    for key in ("ledger", "sink"):
        value = audit.get(key)
        if value is None or str(value).startswith(("postgresql://", "postgres://", "http://", "https://")):
            continue
        if not isinstance(value, str) or value == ":memory:":
            raise CLIError(f"config audit.{key}: give a file path or a URL, got {value!r}")
        audit[key] = _resolve(value, base)
        if not Path(audit[key]).parent.is_dir():
            raise CLIError(f"config audit.{key}: no such folder: {Path(audit[key]).parent}")
    deployment = _mapping(audit.get("deployment"), "audit.deployment")
    for key in ("num_replicas", "autoscaling_config"):
        if key in deployment and not (key == "num_replicas" and deployment[key] == 1):
            raise CLIError(f"config audit.deployment.{key}: the audit loop runs in exactly one replica (one ledger "
                           "writer, one stream of positions; every ingress replica sends it its batches)")
    audit["deployment"] = deployment
    return audit


def audit_options(audit: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``audit`` argument of :func:`~confroute.integrations.serve.build_app` for a checked
    ``audit:`` section (config keys renamed to the monitor's arguments).

    Examples
    --------
    >>> audit_options({"target_agreement": 0.99, "rate": 0.2, "ledger": "/tmp/a.sqlite", "deployment": {}})
    {'target_agreement': 0.99, 'audit_rate': 0.2, 'ledger': '/tmp/a.sqlite', 'deployment': {}}
    """
    if not audit:
        return None
    return {(AUDIT_KEYS[k] if k != "deployment" else k): v for k, v in audit.items()}


def _check_ledger(audit: dict[str, Any] | None) -> None:
    """``--check``: an existing SQLite ledger must have been written for this target and delta."""
    if not audit or str(audit["ledger"]).startswith(("postgresql://", "postgres://")) \
            or not Path(audit["ledger"]).is_file():
        return
    from ..monitoring.ledger import open_ledger

    ledger = open_ledger(audit["ledger"])
    try:
        stored = ledger.get_meta("config") or {}
    finally:
        ledger.close()
    target = next(k for k in _TARGETS if k in audit)
    want = {"objective": target, "target": float(audit[target]), "delta": float(audit.get("delta", 0.05))}
    for key, value in want.items():
        if key in stored and stored[key] != value:
            name = "target" if key == "objective" else key
            raise CLIError(f"config audit: the ledger {audit['ledger']} was written for {name} "
                           f"{stored[key]!r}, not {value!r}: give another audit.ledger for another objective")


def _check_http(http: dict[str, Any]) -> dict[str, Any]:
    """``http``: ``host`` a string, ``port`` an integer port number."""
    _unknown(http, {"host", "port"}, "http")
    if "host" in http and not isinstance(http["host"], str):
        raise CLIError(f"config http.host must be a string (an address such as 127.0.0.1), got {http['host']!r}")
    port = http.get("port", 8000)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise CLIError(f"config http.port must be an integer from 1 to 65535, got {port!r}")
    return http


def _check_pickles(stages: list[dict[str, Any]], allowed: bool) -> None:
    """Refuse ``sklearn:``/``joblib:`` stages (pickles) without the opt-in, before anything loads."""
    from .evaluate import PICKLED

    if allowed:
        return
    for stage in stages:
        backend, _, path = str(stage.get("model", "")).partition(":")
        if backend in PICKLED:
            raise CLIError(
                f"config stage {stage['name']!r}: {backend}:{path} is a pickle, and loading a pickle runs any "
                "code inside it; add 'allow_pickle: true' to the config (or pass --allow-pickle) if you made "
                "this file or trust where it came from"
            )


def _check_stage(stage: Any, where: str, base: Path) -> dict[str, Any]:
    """One entry of ``stages``: a local model (its path made absolute) or a model server."""
    stage = _mapping(stage, where)
    if "name" not in stage:
        raise CLIError(f"config {where}: every stage needs a name")
    if ("model" in stage) == ("url" in stage):
        raise CLIError(f"config {where}: give either model (BACKEND:PATH, a local model) or url (a model server)")
    _unknown(stage, _LOCAL if "model" in stage else _REMOTE, where)
    if "model" in stage:
        from .evaluate import parse_backend

        spec = parse_backend(str(stage["model"]))
        path = spec.path if spec.path.startswith("zoo:") else _resolve(spec.path, base)
        stage["model"] = f"{spec.backend}:{path}"
    elif not str(stage["url"]).startswith(("http://", "https://")):
        raise CLIError(f"config {where}: url must start with http:// or https://, got {stage['url']!r}")
    fb = _mapping(stage.get("fallback"), f"{where}.fallback")
    _unknown(fb, _FALLBACK, f"{where}.fallback")
    _unknown(_mapping(fb.get("circuit_breaker"), f"{where}.fallback.circuit_breaker"), _BREAKER,
             f"{where}.fallback.circuit_breaker")
    stage["fallback"] = fb
    stage["deployment"] = _mapping(stage.get("deployment"), f"{where}.deployment")
    return stage


def _check_thresholds(cfg: dict[str, Any], n_stages: int, base: Path) -> list[Any]:
    """``thresholds`` (one per stage but the last), or read from ``thresholds_from``."""
    if "thresholds_from" in cfg:
        if "thresholds" in cfg:
            raise CLIError("config: give thresholds or thresholds_from, not both")
        cfg["thresholds_from"] = _resolve(str(cfg["thresholds_from"]), base)
        cfg["thresholds"] = _thresholds_from(cfg["thresholds_from"])
    if "thresholds" not in cfg and n_stages > 1:
        raise CLIError("config: give thresholds (one per stage but the last) or thresholds_from")
    thresholds = cfg.get("thresholds", [])
    thresholds = thresholds if isinstance(thresholds, list) else [thresholds]
    if len(thresholds) != n_stages - 1:
        raise CLIError(f"config: {n_stages} stages need {n_stages - 1} threshold(s), got {len(thresholds)}")
    return thresholds


def _thresholds_from(path: str) -> list[Any]:
    """Thresholds from a saved choice: a ``ThresholdChoice.to_dict()`` JSON (``threshold``), a
    cascade choice (``thresholds``), or the ``results.json`` of ``confroute evaluate`` (its first choice)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CLIError(f"config thresholds_from: cannot read {path} ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("choices"), list) and doc["choices"]:
        doc = doc["choices"][0]
    if isinstance(doc, dict) and "thresholds" in doc:
        return list(doc["thresholds"])
    if isinstance(doc, dict) and doc.get("threshold") is not None:
        return [doc["threshold"]]
    raise CLIError(f"config thresholds_from: {path} holds no 'threshold' or 'thresholds' (a saved threshold choice)")


def _stage(stage: dict[str, Any]) -> Any:
    from ..routing.fallback import CircuitBreaker, Fallback

    predictor: Any
    if "model" in stage:
        from .evaluate import load_predictor, parse_backend

        spec = parse_backend(stage["model"])
        if stage.get("device") is not None:
            if spec.backend != "hf":
                raise CLIError(f"config stage {stage['name']!r}: device applies to hf: models only")
            from ..predictors.huggingface import HFPipelinePredictor

            predictor = HFPipelinePredictor(spec.path, batch_size=int(stage.get("batch_size", 32)),
                                            num_threads=stage.get("threads"), max_length=stage.get("max_length"),
                                            device=stage["device"], name=stage["name"])
        else:
            predictor = load_predictor(spec, stage["name"], threads=stage.get("threads"),
                                       batch_size=int(stage.get("batch_size", 32)), max_length=stage.get("max_length"))
        if stage.get("classes") is not None:
            predictor.classes = tuple(str(c) for c in stage["classes"])
    else:
        from ..predictors.remote import OIPPredictor

        remote = {k: stage[k] for k in ("version", "classes", "output", "input_name", "output_name", "batch_size",
                                        "timeout", "connect_timeout", "max_connections", "headers", "binary")
                  if k in stage}
        predictor = OIPPredictor(stage["url"], stage.get("model_name", stage["name"]), name=stage["name"], **remote)
    fb = dict(stage.get("fallback") or {})
    breaker = fb.pop("circuit_breaker", None)
    if breaker is not None:
        fb["circuit_breaker"] = CircuitBreaker(**breaker)
    return Fallback(predictor, name=stage["name"], **fb)


def build_router(cfg: dict[str, Any]) -> Any:
    """The :class:`~confroute.Cascade` a checked config describes (models load here)."""
    from ..core.cost import CostModel, StageCost
    from ..routing.cascade import Cascade

    _check_pickles(cfg["stages"], bool(cfg.get("allow_pickle", False)))  # also for a hand-made cfg
    stages = [_stage(s) for s in cfg["stages"]]
    cost = cfg.get("cost") or {}
    cost_model = None
    if "per_sample" in cost:
        cost_model = CostModel.per_sample([float(p) for p in cost["per_sample"]])
    elif "hourly" in cost:
        cost_model = CostModel([StageCost.hourly(float(p), float(t)) for p, t in cost["hourly"]])
    try:
        return Cascade(stages, cfg["thresholds"], score=cfg.get("score", "max_prob"), cost_model=cost_model,
                       names=[s["name"] for s in cfg["stages"]])
    except (TypeError, ValueError) as exc:
        raise CLIError(f"config: {exc}") from None


def _drift_monitor(drift: dict[str, Any] | None, thresholds: list[Any]) -> Any:
    if not drift:
        return None
    import numpy as np

    from ..evaluation.drift import DriftMonitor

    path = Path(drift["reference_scores"])
    try:
        scores = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
    except (OSError, ValueError) as exc:
        raise CLIError(f"config drift.reference_scores: cannot read {path} ({exc})") from None
    opts: dict[str, Any] = {k: (tuple(v) if k == "due_on" else v) for k, v in drift.items() if k not in ("reference_scores", "every")}
    threshold = thresholds[0] if thresholds else None
    return DriftMonitor(threshold=threshold, **opts).fit(scores)


def app_from_config(cfg: dict[str, Any]) -> Any:
    """The Ray Serve application for a checked config (Ray must be initialised)."""
    from ..integrations.serve import build_app

    factory = functools.partial(build_router, cfg)
    return build_app(
        factory,
        name=cfg["name"],
        stage_options=[s["deployment"] for s in cfg["stages"]],
        ingress_options=cfg["ingress"] or None,
        drift=_drift_monitor(cfg.get("drift"), cfg["thresholds"]),
        drift_every=int((cfg.get("drift") or {}).get("every", 100)),
        audit=audit_options(cfg.get("audit")),
    )


def check_cpus(cfg: dict[str, Any], cpus: float, where: str = "ray.num_cpus") -> float:
    """The CPUs a checked config's deployments reserve at start; raises
    :class:`~confroute.exceptions.CLIError`, naming the keys to change, when they exceed ``cpus``
    (the application would never start: Ray cannot schedule its replicas).

    Examples
    --------
    >>> cfg = check_config({"stages": [{"name": "a", "model": "onnx:/m/a"}, {"name": "b", "model": "onnx:/m/b",
    ...                     "deployment": {"num_replicas": 3, "ray_actor_options": {"num_cpus": 1}}}],
    ...                     "thresholds": [0.9]})
    >>> check_cpus(cfg, 2)
    Traceback (most recent call last):
    ...
    confroute.exceptions.CLIError: config: the deployments reserve 3.6 CPUs at start (stages[0] 'a': 1 x 0.5, stages[1] 'b': 3 x 1, ingress: 1 x 0.1) but ray.num_cpus is 2: lower stages[1].deployment.ray_actor_options.num_cpus or stages[1].deployment.num_replicas, or raise ray.num_cpus
    """
    from ..integrations.serve import cpu_demand
    from ..integrations.serve_audit import audit_cpu_demand

    demand = cpu_demand(len(cfg["stages"]), [s["deployment"] for s in cfg["stages"]], cfg["ingress"] or None)
    demand += audit_cpu_demand(cfg.get("audit"))
    keys = [f"stages[{i}]" for i in range(len(cfg["stages"]))] + ["ingress"] + (["audit"] if cfg.get("audit") else [])
    names = [f" {s['name']!r}" for s in cfg["stages"]] + [""] * (len(demand) - len(cfg["stages"]))
    total = sum(n * c for _, n, c in demand)
    if total <= cpus + 1e-9:
        return total
    parts = ", ".join(f"{k}{name}: {n} x {c:g}" for k, name, (_, n, c) in zip(keys, names, demand))
    big = max(range(len(demand)), key=lambda i: demand[i][1] * demand[i][2])
    section = "ingress" if keys[big] == "ingress" else f"{keys[big]}.deployment"
    raise CLIError(f"config: the deployments reserve {total:g} CPUs at start ({parts}) but {where} is {cpus:g}: "
                   f"lower {section}.ray_actor_options.num_cpus or {section}.num_replicas, or raise ray.num_cpus")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="serve a router on Ray Serve from a YAML/TOML config (JSON + Open Inference Protocol endpoints)",
        description="Start Ray Serve with one deployment per stage and an ingress at http://HOST:PORT/ "
        "(POST /route, POST /v2/models/NAME/infer). See docs/serving.md for the config format.",
    )
    p.add_argument("config", help="a .yaml/.yml or .toml file")
    p.add_argument("--check", action="store_true",
                   help="check the config and build the router once in this process, then exit (no Ray)")
    p.add_argument("--engine", choices=["ray", "local"], default=None,
                   help="ray: Ray Serve (replicas, several machines, the audit loop); local: one process, no "
                   "Ray, far less overhead per request on a small machine (overrides the config's engine)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow sklearn:/joblib: models (pickles run any code inside them when loaded; "
                   "the same as 'allow_pickle: true' in the config)")
    p.set_defaults(func=run_serve)
    return p


def run_serve(args: argparse.Namespace) -> int:
    """Entry point of ``confroute serve``; returns the exit status."""
    try:
        return _serve(args)
    except CLIError as exc:
        print(f"confroute serve: error: {exc}", file=sys.stderr)
        return 2
    except (ImportError, OSError, ValueError) as exc:
        print(f"confroute serve: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _serve_local(cfg: dict[str, Any]) -> int:
    from ..integrations.serve_local import build_local_app, serve_local

    app = build_local_app(build_router(cfg), name=cfg["name"], stage_options=[s["deployment"] for s in cfg["stages"]],
                          drift=_drift_monitor(cfg.get("drift"), cfg["thresholds"]),
                          drift_every=int((cfg.get("drift") or {}).get("every", 100)))
    host, port = cfg["http"].get("host", "127.0.0.1"), int(cfg["http"].get("port", 8000))
    print(f"serving {cfg['name']!r} at http://{host}:{port}/ in this process (engine local; POST /route, "
          f"POST /v2/models/{cfg['name']}/infer, GET /metrics); Ctrl-C stops", flush=True)
    serve_local(app, host, port)
    return 0


def _serve(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, allow_pickle=getattr(args, "allow_pickle", False))
    if getattr(args, "engine", None):
        cfg["engine"] = _check_engine(cfg, args.engine)
    _check_ledger(cfg.get("audit"))  # before any model loads or Ray starts
    if args.check:
        router = build_router(cfg)
        _drift_monitor(cfg.get("drift"), cfg["thresholds"])  # reads the reference scores
        print(f"config ok: {router!r}; classes {list(router.stages[0].classes or []) or 'unnamed'}")
        return 0
    if cfg["engine"] == "local":
        return _serve_local(cfg)
    ray_cfg = cfg["ray"]
    if ray_cfg.get("num_cpus") is not None:
        check_cpus(cfg, float(ray_cfg["num_cpus"]))  # before importing and starting Ray: fail fast
    try:
        import ray
        from ray import serve
    except ImportError:
        raise CLIError("confroute serve needs Ray Serve: pip install 'confroute[serve]'") from None
    ray.init(address=ray_cfg.get("address"), namespace=ray_cfg.get("namespace"),
             num_cpus=ray_cfg.get("num_cpus"), num_gpus=ray_cfg.get("num_gpus"))
    check_cpus(cfg, float(ray.cluster_resources().get("CPU", 0)), "the Ray cluster's CPU count")
    http = {"host": cfg["http"].get("host", "127.0.0.1"), "port": int(cfg["http"].get("port", 8000))}
    serve.start(http_options=http)
    serve.run(app_from_config(cfg), name=cfg["name"], route_prefix="/")
    print(f"serving {cfg['name']!r} at http://{http['host']}:{http['port']}/ "
          f"(POST /route, POST /v2/models/{cfg['name']}/infer{', POST /labels, GET /certificate' if cfg.get('audit') else ''}); "
          "Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0
