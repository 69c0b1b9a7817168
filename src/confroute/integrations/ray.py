"""Route and evaluate Ray Datasets: the same routing, spread over a Ray cluster (or a laptop).

:func:`route_dataset` runs stage 1 on every row with ``map_batches`` (an actor pool: each actor
builds the router once, so a heavy model loads once per actor), keeps the rows it deferred
(``filter``) and runs stage 2 on those only, and so on. Every actor advances its rows with the
one stage loop (:func:`confroute.routing.stagewise.advance`, as ``router.route`` does). The output
holds every input row with the columns of the one routing output schema
(:mod:`confroute.core.schema`, as :func:`confroute.integrations.frames.route_dataframe` writes
them: final label and column index, confidence, answering stage index and name, degraded flag,
error, cost, and each stage's own label, column index and score) and an id column; sort on it
to restore the input order.

:func:`evaluate_dataset` runs every stage once on every row in the cluster, brings the per-row
scores and labels back as arrays (a few numbers per row) and sweeps thresholds on them with
:func:`confroute.evaluation.evaluate.evaluate`, returning the same :class:`EvaluationResult` as in memory.

The same code runs on a local Ray instance and on a cluster: only ``ray.init(address=...)``
differs. Requires ``pip install 'confroute[ray]'``.

Routers reach the workers in one of two ways:

* a router object, which is pickled (with cloudpickle) and unpickled in every actor; or
* a zero-argument *factory* returning the router (``lambda: ThresholdRouter(load(), ...)``),
  called once in every actor, so models load where they run and nothing heavy is pickled.
  The driver never calls it; it runs it once in a short Ray task to learn the stage names,
  prices and scores.

The per-stage acceptance rule is the router's own (see :mod:`confroute.routing.stage_loop`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ..core import schema
from ..core._deprecation import renamed_attribute
from ..core.classes import align, class_labels, label_indices
from ..core.scores import score_name
from ..core.types import PredictionError, Predictions
from ..routing.cascade import Cascade
from ..routing.stage_loop import RowState
from ..routing.stagewise import advance, check_declared, declared_classes
from .frames import InputSpec, arrow_column, result_column_names, route_dataframe

__all__ = [
    "route_dataset",
    "evaluate_dataset",
    "collect_stage_arrays",
    "StageArrays",
    "RouterInfo",
    "ShippedRouter",
    "describe_router",
    "route_dataframe",
]

RouterSource = Cascade | Callable[[], Cascade]

# Hidden columns that travel between stages and are dropped from the output.
_DEFER = "__confroute_defer"
_N_CLASSES = "__confroute_n_classes"
_EVAL = "__confroute_eval_"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("confroute.integrations.ray needs Ray Data: pip install 'confroute[ray]'") from None
    return ray


# -- the router, as the workers get it --------------------------------------------------------------


@dataclass(frozen=True)
class RouterInfo:
    """What the driver needs to know about a router without holding its models."""

    names: tuple[str, ...]
    cost_model: Any
    classes: tuple[str, ...] | None
    score_name: str
    has_calibrator: bool
    on_error: tuple[str, ...] = ()  # per stage: the Fallback's policy (the Serve ingress applies it)
    input_kind: str | None = None  # "text" when a stage declares it takes texts only

    @property
    def n_stages(self) -> int:
        return len(self.names)


def describe_router(router: Cascade) -> RouterInfo:
    """What the driver (and the Serve ingress) needs to know about ``router``: stage names,
    prices, declared classes, the first score's name."""
    return RouterInfo(
        names=tuple(router.names),
        cost_model=router.cost_model,
        classes=declared_classes(router, router.n_stages - 1),
        score_name=score_name(router.score[0]),
        has_calibrator=router.calibrators[0] is not None,
        on_error=tuple(str(stage.on_error) for stage in router.stages),
        input_kind=next((kind for stage in router.stages
                         if (kind := getattr(stage.predictor, "input_kind", None)) is not None), None),
    )




class ShippedRouter:
    """A router or a factory of routers, shipped to every actor."""

    def __init__(self, router: RouterSource) -> None:
        if isinstance(router, Cascade):
            self.router: Cascade | None = router
            self.factory: Callable[[], Cascade] | None = None
            _check_pickles(router)
        elif callable(router):
            self.router, self.factory = None, router
        else:
            raise TypeError(
                "router must be a Cascade/ThresholdRouter or a zero-argument function returning one, "
                f"got {type(router).__name__}"
            )

    def build(self) -> Cascade:
        if self.router is not None:
            return self.router
        assert self.factory is not None
        router = self.factory()
        if not isinstance(router, Cascade):
            raise TypeError(
                f"the router factory returned {type(router).__name__}, not a Cascade/ThresholdRouter"
            )
        return router

    def info(self, ray: Any) -> RouterInfo:
        if self.router is not None:
            return describe_router(self.router)
        # Learn names and prices in a worker, so the driver never loads the models.
        return ray.get(ray.remote(num_cpus=0)(_remote_describe).remote(self))


def _remote_describe(source: ShippedRouter) -> RouterInfo:
    return describe_router(source.build())


def _check_pickles(router: Cascade) -> None:
    try:
        from ray import cloudpickle
    except ImportError:  # pragma: no cover - checked before
        import pickle as cloudpickle  # type: ignore[no-redef]
    try:
        cloudpickle.dumps(router)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
        raise TypeError(
            f"the router cannot be sent to Ray workers ({type(exc).__name__}: {exc}); pass a "
            "zero-argument function that builds it instead, e.g. route_dataset(ds, make_router)"
        ) from None


def _per_stage(
    value: Any, n_stages: int, name: str, per_stage: tuple[type, ...] = (list, tuple)
) -> list[Any]:
    if isinstance(value, per_stage):
        value = cast(Any, value)
        if len(value) != n_stages:
            raise ValueError(f"{name}: give one value or one per stage ({n_stages}), got {len(value)}")
        return list(value)
    return [value] * n_stages


def _map_options(
    n_stages: int,
    batch_size: Any,
    concurrency: Any,
    num_cpus: Any,
    num_gpus: Any,
    map_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    extra = _per_stage(list(map_kwargs) if isinstance(map_kwargs, (list, tuple)) else map_kwargs or {},
                       n_stages, "map_kwargs")
    options = []
    for bs, conc, cpus, gpus, more in zip(
        _per_stage(batch_size, n_stages, "batch_size"),
        # A tuple is one (min, max) pool; a list gives one value per stage.
        _per_stage(concurrency, n_stages, "concurrency", per_stage=(list,)),
        _per_stage(num_cpus, n_stages, "num_cpus"),
        _per_stage(num_gpus, n_stages, "num_gpus"),
        extra,
    ):
        if bs is not None and int(bs) < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs}")
        opt: dict[str, Any] = {"batch_size": bs, "compute": _actor_pool(conc), "batch_format": "pyarrow"}
        if cpus is not None:
            opt["num_cpus"] = cpus
        if gpus is not None:
            opt["num_gpus"] = gpus
        opt.update(dict(more or {}))
        options.append(opt)
    return options


def _actor_pool(concurrency: Any) -> Any:
    from ray.data import ActorPoolStrategy

    if isinstance(concurrency, ActorPoolStrategy):
        return concurrency
    if isinstance(concurrency, tuple):
        low, high = concurrency
        return ActorPoolStrategy(min_size=int(low), max_size=int(high))
    if int(concurrency) < 1:
        raise ValueError(f"concurrency must be >= 1 actor, got {concurrency}")
    return ActorPoolStrategy(size=int(concurrency))


def _with_id(ds: Any, id_column: str, columns: list[str]) -> Any:
    if id_column in columns:
        return ds
    from ray.data.expressions import monotonically_increasing_id

    # Unique, and increasing in the order Ray reads the rows; assigned once, before routing
    # (the intermediate results are materialised, so every branch sees the same ids).
    # Ray 2.60 misaligns these ids on pandas blocks that do not start at index 0 (from_pandas
    # on slices gives nulls), so the blocks are made Arrow first.
    arrow = ds.map_batches(_identity, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
    return arrow.with_column(id_column, monotonically_increasing_id())


def _identity(table: Any) -> Any:
    return table


def _block_column(table: Any, name: str) -> np.ndarray:
    from ray.data.block import BlockAccessor

    try:
        return cast(np.ndarray, BlockAccessor.for_block(table.select([name])).to_numpy(name))
    except Exception:  # noqa: BLE001 - plain Arrow columns are read the plain way
        return arrow_column(table, name)


def _replace_columns(table: Any, arrays: Mapping[str, Any]) -> Any:
    table = table.drop_columns([c for c in arrays if c in table.column_names])
    for name, arr in arrays.items():
        table = table.append_column(name, arr)
    return table


# -- routing -----------------------------------------------------------------------------------------


class _RouteStage:
    """Actor running stage ``s`` of the router on batches of rows that reached it."""

    def __init__(self, source: ShippedRouter, s: int, inputs: InputSpec) -> None:
        self.router = source.build()
        self.s = s
        self.inputs = inputs
        self.label_classes = declared_classes(self.router, self.router.n_stages - 1)

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        router, s = self.router, self.s
        m = table.num_rows
        inputs = self.inputs.from_columns(lambda c: _block_column(table, c))
        state = RowState.initial(router.n_stages, m) if s == 0 else _state_from_table(table, router.names, s)
        state, defer = advance(router, s, inputs, state)
        cols = schema.result_columns(state, router.names, self.label_classes, router.cost_model is not None)
        arrays = schema.arrow_arrays(cols, self.label_classes)
        arrays[_N_CLASSES] = pa.array(state.n_classes)
        arrays[_DEFER] = pa.array(defer, type=pa.bool_())
        return _replace_columns(table, arrays)


def _state_from_table(table: Any, names: Sequence[str], s: int) -> RowState:
    """The state of rows that stage ``s - 1`` deferred to stage ``s``, read back from its columns."""
    def get(c: str) -> np.ndarray:
        return table.column(c).to_numpy()

    m = table.num_rows
    cost = get("cost") if "cost" in table.column_names else np.full(m, np.nan)
    return RowState(
        stage_label_index=np.stack([get(f"{n}_label_index") for n in names]).astype(np.int64).reshape(len(names), m),
        stage_scores=np.stack([get(f"{n}_score") for n in names]).astype(np.float64).reshape(len(names), m),
        label_index=get("label_index").astype(np.int64),
        confidence=get("confidence").astype(np.float64),
        stage=get("stage").astype(np.int64),
        degraded=get("degraded").astype(bool),
        errors=np.asarray(table.column("error").to_pylist() + [None], dtype=object)[:m],
        cost=cost.astype(np.float64),
        n_classes=get(_N_CLASSES).astype(np.int64),
        reached_stage=np.full(m, s - 1, dtype=np.int64),
        # the token price a row paid at an earlier stage does not travel through the table: a row
        # final after a token-priced stage other than its own costs NaN (unknown, never 0)
        stage_prices=np.full((len(names), m), np.nan),
    )


def route_dataset(
    ds: Any,
    router: RouterSource,
    *,
    text_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    id_column: str = "id",
    batch_size: int | Sequence[int] = 1024,
    concurrency: int | tuple[int, int] | list[Any] = 1,
    num_cpus: float | Sequence[float | None] | None = None,
    num_gpus: float | Sequence[float | None] | None = None,
    map_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    sort: bool = False,
) -> Any:
    """Route every row of a Ray Dataset through a router, stage by stage.

    Stage 1 runs on every row (``map_batches`` over an actor pool); only the rows it defers are
    passed (``filter``) to stage 2's actor pool, and so on. Each stage's output is materialised
    in the object store before the next stage runs, so that no stage runs twice; the last
    stage is left lazy. Failures follow each stage's :class:`~confroute.Fallback` policy
    exactly as in :meth:`Cascade.route`.

    Parameters
    ----------
    ds : ray.data.Dataset
    router : Cascade, ThresholdRouter, or a zero-argument function returning one
        A router object is pickled to every actor; a function is called once per actor (load
        heavy models there).
    text_column : str, optional
        The column holding the inputs (texts, or any per-row object the stages take).
    feature_columns : list of str, optional
        Numeric columns stacked into one feature row per input (scikit-learn stages).
    id_column : str, default "id"
        Identifies each row in the output. Added when missing, as an increasing integer
        (``ray.data.expressions.monotonically_increasing_id``): unique, increasing in the order
        the rows were read, not consecutive. Sort on it to restore that order. An existing
        column is kept as it is (it should be unique).
    batch_size : int or one per stage, default 1024
        Rows per ``map_batches`` call; the stage's :class:`~confroute.Fallback` may split further.
    concurrency : int, (min, max), ActorPoolStrategy, or a list with one per stage, default 1
        Actors per stage; a ``(min, max)`` tuple gives an autoscaling pool.
    num_cpus, num_gpus : float or one per stage, optional
        Resources per actor (Ray's defaults when ``None``).
    map_kwargs : mapping or one per stage, optional
        More keyword arguments for ``map_batches`` (``memory``, ``accelerator_type``, ...).
    sort : bool, default False
        Sort the output by ``id_column`` (a distributed sort: costs a shuffle).

    Returns
    -------
    ray.data.Dataset
        Every input row (in no particular order unless ``sort``), with its input columns, the
        id column and the result columns of :func:`confroute.integrations.frames.route_dataframe`.

    Examples
    --------
    >>> import ray                                                         # doctest: +SKIP
    >>> ray.init(num_cpus=2)                                               # doctest: +SKIP
    >>> ds = ray.data.read_csv("reviews.csv")                              # doctest: +SKIP
    >>> out = route_dataset(ds, make_router, text_column="sentence",
    ...                     batch_size=256, concurrency=[2, 1])            # doctest: +SKIP
    >>> out.write_parquet("routed/")                                       # doctest: +SKIP
    """
    ray = _import_ray()
    from ray.data.expressions import col

    source = ShippedRouter(router)
    spec = InputSpec.make(text_column, feature_columns)
    info = source.info(ray)
    columns = list(ds.columns())
    result_names = result_column_names(info.names, has_cost=True) + [_DEFER, _N_CLASSES]
    spec.check(columns, result_names)
    if id_column in result_names or id_column in spec.columns:
        raise ValueError(f"id_column {id_column!r} clashes with an input or result column")
    options = _map_options(info.n_stages, batch_size, concurrency, num_cpus, num_gpus, map_kwargs)

    current = _with_id(ds, id_column, columns)
    finished = []
    for s in range(info.n_stages):
        out = current.map_batches(_RouteStage, fn_constructor_args=(source, s, spec), **options[s])
        if s == info.n_stages - 1:
            finished.append(out)
            break
        # Both branches below read this stage's output: materialise it so the stage runs once.
        out = out.materialize()
        finished.append(out.filter(expr=col(_DEFER) == False))  # noqa: E712 - an expression
        current = out.filter(expr=col(_DEFER) == True)  # noqa: E712
    result = finished[0].union(*finished[1:]) if len(finished) > 1 else finished[0]
    result = result.drop_columns([_DEFER, _N_CLASSES])
    return result.sort(id_column) if sort else result


# -- evaluation --------------------------------------------------------------------------------------


class _ScoreStage:
    """Actor running stage ``s`` on *every* row, as ``Cascade.stage_predictions`` does."""

    def __init__(self, source: ShippedRouter, s: int, inputs: InputSpec) -> None:
        self.router = source.build()
        self.s = s
        self.inputs = inputs

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        router, s = self.router, self.s
        name = router.names[s]
        inputs = self.inputs.from_columns(lambda c: _block_column(table, c))
        ref = declared_classes(router, s - 1) if s > 0 else None
        # Failures raise: evaluation needs every stage's answer on every row.
        raw = router.stages[s].predictor.predict(inputs)
        check_declared(router, s, raw.classes, ref)
        raw, _ = align(raw, ref, None if ref is None else len(ref), name)
        if s > 0:
            earlier = table.column(_N_CLASSES).to_numpy()
            bad = earlier != raw.n_classes
            if bad.any():
                raise PredictionError(
                    f"stage {name!r} returns {raw.n_classes} classes but earlier stages return "
                    f"{int(earlier[bad][0])}"
                )
        preds = router.calibrated(s, raw)
        arrays: dict[str, Any] = {
            f"{_EVAL}label_{s}": pa.array(preds.label_index.astype(np.int64)),
            f"{_EVAL}score_{s}": pa.array(router.stage_score(s, preds, inputs)),
            _N_CLASSES: pa.array(np.full(len(preds), preds.n_classes, dtype=np.int64)),
        }
        if s == 0:
            arrays[f"{_EVAL}probs"] = _matrix(preds.probs)
            if router.calibrators[0] is not None:
                arrays[f"{_EVAL}raw_probs"] = _matrix(raw.probs)
        return _replace_columns(table, arrays)


def _matrix(values: np.ndarray) -> Any:
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float64)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _unmatrix(column: Any) -> np.ndarray:
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


@dataclass(frozen=True)
class StageArrays:
    """Per-row results of every stage on every row, gathered on the driver (sorted by id).

    Attributes
    ----------
    ids : ndarray, shape (n,)
    y : ndarray, shape (n,)
        True labels (class names or indices), as stored in the label column.
    label_index : ndarray of int, shape (n_stages, n)
        Each stage's predicted column index (cascade class order).
    scores : ndarray of float, shape (n_stages, n)
        Each stage's (calibrated) confidence score, as the router computes it.
    probs : ndarray, shape (n, k)
        The first stage's calibrated probabilities (for ECE).
    raw_probs : ndarray, shape (n, k), or None
        The first stage's probabilities before calibration, when it has a calibrator.
    info : RouterInfo
        Stage names, cost model, class names and score name of the router.
    """

    ids: np.ndarray
    y: np.ndarray
    label_index: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    raw_probs: np.ndarray | None
    info: RouterInfo

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    labels = renamed_attribute("label_index")  # deprecated name (goes in 0.3)

    def stage_label_values(self, s: int) -> np.ndarray:
        """Stage ``s``'s predictions as class values (the user's label space)."""
        return class_labels(self.label_index[s], self.info.classes)

    def evaluate(self) -> Any:
        """Evaluate with :func:`confroute.evaluate` on the gathered arrays (any number of stages)."""
        from ..calibration import metrics
        from ..evaluation.evaluate import Evaluation

        n_stages = self.info.n_stages
        primary = Predictions(self.probs, None, self.info.classes)
        result = Evaluation.from_predictions(
            self.y,
            [primary] + [self.stage_label_values(s) for s in range(1, n_stages)],
            scores=self.scores[: n_stages - 1],
            cost_model=self.info.cost_model,
            stage_names=self.info.names,
        )
        changes: dict[str, Any] = {"score": (self.info.score_name,) + result.score[1:]}
        if self.raw_probs is not None and len(self):
            y_index = label_indices(self.y, primary.classes, primary.n_classes)
            before = metrics.reliability_table(self.raw_probs, y_index)
            changes.update(reliability_before_calibration=before, ece_before_calibration=before.ece)
        return dataclasses.replace(result, **changes)


def collect_stage_arrays(
    ds: Any,
    router: RouterSource,
    *,
    label_column: str,
    text_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    id_column: str = "id",
    batch_size: int | Sequence[int] = 1024,
    concurrency: int | tuple[int, int] | list[Any] = 1,
    num_cpus: float | Sequence[float | None] | None = None,
    num_gpus: float | Sequence[float | None] | None = None,
    map_kwargs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> StageArrays:
    """Run every stage once on every row in the cluster; gather labels and scores as arrays.

    What comes back to the driver is small: per row, the id, the true label, and a label and a
    score per stage (plus the first stage's probabilities for calibration metrics). Parameters
    are those of :func:`route_dataset`, plus ``label_column`` (the true labels).
    """
    ray = _import_ray()
    source = ShippedRouter(router)
    spec = InputSpec.make(text_column, feature_columns)
    info = source.info(ray)
    columns = list(ds.columns())
    spec.check(columns, [_N_CLASSES])
    if label_column not in columns:
        raise KeyError(f"label column {label_column!r} not found; the dataset has columns {columns}")
    options = _map_options(info.n_stages, batch_size, concurrency, num_cpus, num_gpus, map_kwargs)
    current = _with_id(ds, id_column, columns)
    for s in range(info.n_stages):
        current = current.map_batches(_ScoreStage, fn_constructor_args=(source, s, spec), **options[s])
    keep = [id_column, label_column, *_eval_columns(info)]
    parts = list(current.select_columns(keep).iter_batches(batch_format="pyarrow", batch_size=None))
    return assemble_stage_arrays(parts, info, id_column=id_column, label_column=label_column)


def assemble_stage_arrays(
    parts: Sequence[Any], info: RouterInfo, *, id_column: str, label_column: str
) -> StageArrays:
    """Join the per-row outputs of the scoring actors (Arrow tables) into arrays sorted by id."""
    import pyarrow as pa

    n_stages = info.n_stages
    parts = [p for p in parts if p.num_rows]
    if not parts:
        empty = np.zeros((n_stages, 0))
        return StageArrays(np.zeros(0, dtype=np.int64), np.zeros(0), empty.astype(np.int64), empty,
                           np.zeros((0, 0)), None, info)
    table = pa.concat_tables(parts)
    ids = table.column(id_column).to_numpy()
    order = np.argsort(ids, kind="stable")
    table = table.take(pa.array(order))
    return StageArrays(
        ids=ids[order],
        y=np.asarray(table.column(label_column).to_numpy()),
        label_index=np.stack([table.column(f"{_EVAL}label_{s}").to_numpy() for s in range(n_stages)]),
        scores=np.stack([table.column(f"{_EVAL}score_{s}").to_numpy() for s in range(n_stages)]),
        probs=_unmatrix(table.column(f"{_EVAL}probs")),
        raw_probs=_unmatrix(table.column(f"{_EVAL}raw_probs")) if info.has_calibrator else None,
        info=info,
    )


def _eval_columns(info: RouterInfo) -> list[str]:
    stages = range(info.n_stages)
    cols = [f"{_EVAL}label_{s}" for s in stages] + [f"{_EVAL}score_{s}" for s in stages]
    cols.append(f"{_EVAL}probs")
    if info.has_calibrator:
        cols.append(f"{_EVAL}raw_probs")
    return cols


def evaluate_dataset(ds: Any, router: RouterSource, *, label_column: str, **kwargs: Any) -> Any:
    """Evaluate a two-stage router over a Ray Dataset at every threshold at once.

    Runs every stage once per row in the cluster (:func:`collect_stage_arrays`), then sweeps the
    thresholds on the driver with :func:`confroute.evaluation.evaluate.evaluate`; the result equals
    ``confroute.evaluate(router, inputs, labels)`` on the same rows. Keyword arguments are those
    of :func:`collect_stage_arrays`.

    Returns
    -------
    EvaluationResult
    """
    return collect_stage_arrays(ds, router, label_column=label_column, **kwargs).evaluate()
