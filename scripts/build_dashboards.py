#!/usr/bin/env python3
"""Build the Grafana dashboards of the MLOps stack from code (grafana-foundation-sdk).

Writes predictor.json and hosts.json into the grafana role's files/dashboards
folder (committed; the role copies them to the monitoring host). Run it after
changing this file; `--check` only compares and exits 1 when a committed file is
out of date.

    .venv/bin/python scripts/build_dashboards.py [--output-dir DIR] [--check]

Each dashboard is data (a Board: variables and rows of panel specs, at the end of
the file); build() is the one place that turns specs into SDK panels, so a new panel
is one more spec and every panel of a kind looks the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, assert_never

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import (
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = (
    ROOT
    / "collections"
    / "ansible_collections"
    / "mlops"
    / "stack"
    / "roles"
    / "grafana"
    / "files"
    / "dashboards"
)

# Every panel and query variable takes its datasource from this dashboard variable, never
# from a fixed uid: the grafana role sets the variable's current value to the uid it
# provisions (grafana_datasource_uid), and a user may switch it in the UI.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = dashboard_models.DataSourceRef(
    type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}"
)
RATE = "$__rate_interval"
PREDICT = 'endpoint="/predict"'
PREDICTORS = 'instance=~"$instance"'
HOSTS = 'host=~"$host"'
REAL_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|autofs"'

# Label selectors shared by the queries: each limits a query to what the variables select.
PREDICTOR_SEL = f"{{{PREDICTORS}}}"
PREDICT_SEL = f"{{{PREDICTORS}, {PREDICT}}}"
ERRORS_SEL = f'{{{PREDICTORS}, status=~"5.."}}'
FEATURE_SEL = f'{{{PREDICTORS}, feature=~"$feature"}}'
# The drift recording rules (prometheus role) sum over all predictors: no instance label.
DRIFT_FEATURE_SEL = '{feature=~"$feature"}'
HOST_SEL = f"{{{HOSTS}}}"
FS_SEL = f"{{{HOSTS}, {REAL_FS}}}"
NET_SEL = f'{{{HOSTS}, device!~"lo|veth.*|docker.*|br-.*"}}'

Steps = Sequence[tuple[float | None, str]]


# --- Specs: what a dashboard shows, free of SDK calls -------------------------------------


@dataclass(frozen=True)
class Query:
    """A PromQL range query and its legend; the panel gives it its refId."""

    expr: str
    legend: str = "__auto"


@dataclass(frozen=True, kw_only=True)
class BasePanel:
    """What every panel has; width in columns of the 24-column grid."""

    title: str
    description: str
    width: int


@dataclass(frozen=True, kw_only=True)
class Graph(BasePanel):
    """Time series; the queries get refIds A, B, ... in this order."""

    unit: str
    queries: Sequence[Query]
    width: int = 12
    stacked: bool = False
    # One panel per value of this variable, side by side (None: one panel).
    repeat: str | None = None
    max_per_row: int = 2


@dataclass(frozen=True, kw_only=True)
class UpDownStat(BasePanel):
    """Last value of a 0/1 metric shown as red/green text (a target is up or down)."""

    query: Query
    up_text: str = "up"
    down_text: str = "down"
    width: int = 6


@dataclass(frozen=True, kw_only=True)
class Stat(BasePanel):
    """Last value of a metric, its text colored by thresholds."""

    unit: str
    query: Query
    steps: Steps
    width: int = 6


@dataclass(frozen=True, kw_only=True)
class Heatmap(BasePanel):
    """Histogram buckets over time, one panel per value of the `repeat` variable."""

    query: Query
    repeat: str
    width: int = 6
    max_per_row: int = 4


@dataclass(frozen=True, kw_only=True)
class Table(BasePanel):
    """An instant query as a table: one line per series, its labels as columns."""

    expr: str
    hidden_columns: Sequence[str] = ("Time", "Value")
    width: int = 12


PanelSpec = Graph | UpDownStat | Stat | Heatmap | Table


@dataclass(frozen=True)
class Variable:
    """A multi-value query variable (label_values) the panel selectors use."""

    name: str
    label: str
    expr: str


@dataclass(frozen=True, kw_only=True)
class Board:
    """A dashboard: rows by title, in order; the row None holds the panels above the first."""

    uid: str
    title: str
    description: str
    variables: Sequence[Variable]
    rows: Mapping[str | None, Sequence[PanelSpec]]


# --- SDK: specs to panels -----------------------------------------------------------------

# The SDK's panel builders share the frame setters (id, title, ...) but no base class
# that declares them, hence a constrained type variable rather than one common type.
SdkPanel = TypeVar("SdkPanel", timeseries.Panel, stat.Panel, heatmap.Panel, table.Panel)


class Ids:
    """Stable panel ids in build order, so regenerating gives the same JSON."""

    def __init__(self) -> None:
        self.next_id = 0

    def __call__(self) -> int:
        self.next_id += 1
        return self.next_id


def query(spec: Query, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(spec.expr)
        .legend_format(spec.legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .range()
    )


def instant_table_query(expr: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .instant()
        .format(prometheus_models.PromQueryFormat.TABLE)
    )


def legend_table() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"])


def framed(panel: SdkPanel, spec: BasePanel, panel_id: int, height: int) -> SdkPanel:
    """The part every panel shares; the datasource is the variable, never a uid."""
    return (
        panel.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .span(spec.width)
        .height(height)
    )


def graph(spec: Graph, panel_id: int) -> timeseries.Panel:
    panel = (
        framed(timeseries.Panel(), spec, panel_id, height=8)
        .unit(spec.unit)
        .fill_opacity(10)
        .legend(legend_table())
        .targets([query(q, chr(ord("A") + index)) for index, q in enumerate(spec.queries)])
    )
    if spec.stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if spec.repeat is not None:
        panel = panel.repeat(spec.repeat).repeat_direction("h").max_per_row(spec.max_per_row)
    return panel


def stat_panel(spec: UpDownStat | Stat, panel_id: int) -> stat.Panel:
    panel = (
        framed(stat.Panel(), spec, panel_id, height=4)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(last_value())
        .with_target(query(spec.query))
    )
    if isinstance(spec, Stat):
        return (
            panel.unit(spec.unit)
            .thresholds(thresholds(spec.steps))
            .color_mode(common.BigValueColorMode.VALUE)
        )
    mapping = dashboard_models.ValueMap(
        options={
            "0": dashboard_models.ValueMappingResult(text=spec.down_text, color="red", index=0),
            "1": dashboard_models.ValueMappingResult(text=spec.up_text, color="green", index=1),
        }
    )
    # Up or down is all there is to see: a colored background, no sparkline.
    return (
        panel.mappings([mapping])
        .thresholds(thresholds([(None, "red"), (1, "green")]))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )


def bucket_heatmap(spec: Heatmap, panel_id: int) -> heatmap.Panel:
    return (
        framed(heatmap.Panel(), spec, panel_id, height=8)
        .repeat(spec.repeat)
        .repeat_direction("h")
        .max_per_row(spec.max_per_row)
        # The query returns bucket counts already; Grafana must not bucket them again.
        .calculate(False)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Spectral")
            .steps(64)
            .exponent(0.5)
        )
        .with_target(query(spec.query).format(prometheus_models.PromQueryFormat.HEATMAP))
    )


def label_table(spec: Table, panel_id: int) -> table.Panel:
    return (
        framed(table.Panel(), spec, panel_id, height=8)
        .with_target(instant_table_query(spec.expr))
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": dict.fromkeys(spec.hidden_columns, True)},
            )
        )
    )


def panel(spec: PanelSpec, panel_id: int) -> cogbuilder.Builder[dashboard_models.Panel]:
    match spec:
        case Graph():
            return graph(spec, panel_id)
        case UpDownStat() | Stat():
            return stat_panel(spec, panel_id)
        case Heatmap():
            return bucket_heatmap(spec, panel_id)
        case Table():
            return label_table(spec, panel_id)
        case _:
            assert_never(spec)


def query_variable(variable: Variable) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(variable.name)
        .label(variable.label)
        .datasource(DATASOURCE)
        .query(
            {
                "query": variable.expr,
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
                "qryType": 1,
            }
        )
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )


def datasource_variable() -> dashboard.DatasourceVariable:
    """The Prometheus datasource the panels use; no current value here (see DATASOURCE)."""
    return (
        dashboard.DatasourceVariable(DATASOURCE_VARIABLE)
        .label("Data source")
        .description("Prometheus datasource of every panel.")
        .type("prometheus")
    )


def build(board: Board) -> dashboard_models.Dashboard:
    """The SDK dashboard of a spec; the datasource variable comes first, before its own."""
    ids = Ids()
    result = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(["mlops"])
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("10s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )
    for variable in board.variables:
        result = result.with_variable(query_variable(variable))
    # Ids in spec order (a row before its panels): the committed JSON stays stable.
    for title, specs in board.rows.items():
        if title is not None:
            result = result.with_row(dashboard.Row(title).id(ids()))
        for spec in specs:
            result = result.with_panel(panel(spec, ids()))
    return result.build()


# --- The dashboards -----------------------------------------------------------------------

PREDICTOR_BOARD = Board(
    uid="mlops-predictor",
    title="MLOps / Predictors",
    description="Traffic, errors, latency, predictions, inputs and model state of the predictors.",
    variables=[
        Variable("instance", "Predictor", "label_values(predictor_model_info, instance)"),
        Variable("feature", "Feature", "label_values(predictor_feature_value_bucket, feature)"),
    ],
    rows={
        "Service": [
            UpDownStat(
                title="Predictors scraped",
                query=Query(f'up{{job="predictor", {PREDICTORS}}}', "{{host}}"),
                description="Prometheus can scrape the predictor "
                "(PredictorDown fires after 30 s of 0).",
                width=8,
            ),
            UpDownStat(
                title="Registry reachable",
                query=Query(f"predictor_registry_up{PREDICTOR_SEL}", "{{host}}"),
                description="The predictor reached the MLflow Model Registry on its last poll.",
                up_text="reachable",
                down_text="unreachable",
                width=8,
            ),
            Stat(
                title="Since last registry success",
                unit="s",
                query=Query(
                    f"time() - predictor_registry_last_success_timestamp_seconds{PREDICTOR_SEL}",
                    "{{host}}",
                ),
                description="Seconds since the predictor last reached the registry.",
                steps=[(None, "green"), (120, "orange"), (300, "red")],
                width=8,
            ),
        ],
        "Traffic": [
            Graph(
                title="Request rate",
                unit="reqps",
                queries=[
                    Query(
                        "sum by (host, endpoint) "
                        f"(rate(predictor_requests_total{PREDICTOR_SEL}[{RATE}]))",
                        "{{host}} {{endpoint}}",
                    )
                ],
                description="Requests per second by predictor and endpoint.",
            ),
            Graph(
                title="Error ratio (5xx)",
                unit="percentunit",
                queries=[
                    Query(
                        # "or ... * 0": with no 5xx series at all the ratio is 0, not "No data"
                        f"(sum by (host) (rate(predictor_requests_total{ERRORS_SEL}[{RATE}]))"
                        " or sum by (host) "
                        f"(rate(predictor_requests_total{PREDICTOR_SEL}[{RATE}])) * 0)"
                        " / sum by (host) "
                        f"(rate(predictor_requests_total{PREDICTOR_SEL}[{RATE}]))",
                        "{{host}}",
                    )
                ],
                description="Share of requests answered with a 5xx "
                "(PredictorHighErrorRatio: > 5 %).",
            ),
            Graph(
                title="/predict latency",
                unit="s",
                queries=[
                    Query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(predictor_request_duration_seconds_bucket{PREDICT_SEL}"
                        f"[{RATE}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                description="p50, p95 and p99 of /predict over the selected predictors "
                "(PredictorHighLatencyP99: p99 > 500 ms).",
                width=24,
            ),
        ],
        "Predictions and inputs": [
            Graph(
                title="Predictions per class",
                unit="ops",
                queries=[
                    Query(
                        "sum by (class) "
                        f"(rate(predictor_predictions_total{PREDICTOR_SEL}[{RATE}]))",
                        "{{class}}",
                    )
                ],
                description="Predicted classes per second; a shift hints at drifting inputs.",
                stacked=True,
            ),
            Graph(
                title="Feature medians",
                unit="none",
                queries=[
                    Query(
                        "histogram_quantile(0.5, sum by (feature, le) "
                        f"(rate(predictor_feature_value_bucket{PREDICTOR_SEL}[{RATE}])))",
                        "{{feature}} p50",
                    )
                ],
                description="Median of every input feature seen by /predict.",
            ),
            Heatmap(
                title="Feature $feature",
                query=Query(
                    f"sum by (le) (rate(predictor_feature_value_bucket{FEATURE_SEL}[{RATE}]))",
                    "{{le}}",
                ),
                description="Distribution of the input feature over time (histogram buckets).",
                repeat="feature",
            ),
        ],
        "Drift": [
            Graph(
                title="Input drift (PSI)",
                unit="none",
                queries=[
                    Query(
                        f"version_feature:predictor_drift_psi:window{DRIFT_FEATURE_SEL}",
                        "{{feature}} (version {{version}})",
                    )
                ],
                description="Population stability index of each feature: the served rows of "
                "the last window against the training rows of the served version "
                "(0.1 moderate, 0.25 significant; InputDrift fires above "
                "prometheus_drift_psi_threshold).",
            ),
            Graph(
                title="Prediction drift (PSI)",
                unit="none",
                queries=[
                    Query(
                        "version:predictor_drift_prediction_psi:window",
                        "version {{version}}",
                    )
                ],
                description="Population stability index of the predicted class mix against "
                "the class mix of the training labels (PredictionDrift).",
            ),
            Graph(
                title="Served vs reference: $feature",
                unit="percentunit",
                queries=[
                    Query(
                        "version_feature_bin:predictor_drift_served_share:window"
                        f"{DRIFT_FEATURE_SEL}",
                        "served <= {{bin}} (version {{version}})",
                    ),
                    Query(
                        "version_feature_bin:predictor_drift_reference_share:max"
                        f"{DRIFT_FEATURE_SEL}",
                        "training <= {{bin}} (version {{version}})",
                    ),
                ],
                description="Share of the rows of the last window in each bin of the reference "
                "(bin: its upper edge in cm), beside the share of the training rows in it.",
                repeat="feature",
            ),
        ],
        "Model": [
            Table(
                title="Served model",
                expr="max by (host, name, version, alias, backend) "
                f"(predictor_model_info{PREDICTOR_SEL})",
                description="Model name, version, alias and backend each predictor serves now.",
            ),
            Graph(
                title="Model reloads",
                unit="short",
                queries=[
                    Query(
                        "sum by (host) "
                        f"(increase(predictor_model_reloads_total{PREDICTOR_SEL}[{RATE}]))",
                        "{{host}} reloads",
                    ),
                    Query(
                        "sum by (host) (increase("
                        f"predictor_model_reload_failures_total{PREDICTOR_SEL}[{RATE}]))",
                        "{{host}} failures",
                    ),
                ],
                description="Successful and failed hot reloads "
                "(ModelReloadFailing fires on failures).",
            ),
        ],
    },
)

HOSTS_BOARD = Board(
    uid="mlops-hosts",
    title="MLOps / Hosts",
    description="CPU, memory, disk and network of every host (node exporter).",
    variables=[Variable("host", "Host", "label_values(node_uname_info, host)")],
    rows={
        None: [
            UpDownStat(
                title="Node exporters",
                query=Query(f'up{{job="node", {HOSTS}}}', "{{host}}"),
                description="Prometheus can scrape the node exporter of the host.",
                width=24,
            )
        ],
        "CPU and memory": [
            Graph(
                title="CPU busy",
                unit="percentunit",
                queries=[
                    Query(
                        "1 - avg by (host) "
                        f'(rate(node_cpu_seconds_total{{{HOSTS}, mode="idle"}}[{RATE}]))',
                        "{{host}}",
                    )
                ],
                description="Share of CPU time not idle, averaged over the host's cores.",
            ),
            Graph(
                title="Load average (1 min)",
                unit="short",
                queries=[Query(f"node_load1{HOST_SEL}", "{{host}}")],
                description="Runnable processes averaged over one minute.",
            ),
            Graph(
                title="Memory used",
                unit="percentunit",
                queries=[
                    Query(
                        f"1 - node_memory_MemAvailable_bytes{HOST_SEL}"
                        f" / node_memory_MemTotal_bytes{HOST_SEL}",
                        "{{host}}",
                    )
                ],
                description="Memory not available to new processes (HostMemoryPressure: > 90 %).",
            ),
            Graph(
                title="Memory available",
                unit="bytes",
                queries=[Query(f"node_memory_MemAvailable_bytes{HOST_SEL}", "{{host}}")],
                description="Memory available to new processes without swapping.",
            ),
        ],
        "Disk": [
            Graph(
                title="Disk space used",
                unit="percentunit",
                queries=[
                    Query(
                        f"1 - node_filesystem_avail_bytes{FS_SEL}"
                        f" / node_filesystem_size_bytes{FS_SEL}",
                        "{{host}} {{mountpoint}}",
                    )
                ],
                description="Share of each real file system in use (HostDiskPressure: > 90 %).",
            ),
            Graph(
                title="Disk throughput",
                unit="Bps",
                queries=[
                    Query(
                        f"sum by (host) (rate(node_disk_read_bytes_total{HOST_SEL}[{RATE}]))",
                        "{{host}} read",
                    ),
                    Query(
                        f"sum by (host) (rate(node_disk_written_bytes_total{HOST_SEL}[{RATE}]))",
                        "{{host}} written",
                    ),
                ],
                description="Bytes read and written per second over all block devices.",
            ),
        ],
        "Network": [
            Graph(
                title="Network received",
                unit="Bps",
                queries=[
                    Query(
                        f"sum by (host) (rate(node_network_receive_bytes_total{NET_SEL}[{RATE}]))",
                        "{{host}}",
                    )
                ],
                description="Bytes received per second, loopback and bridges excluded.",
            ),
            Graph(
                title="Network sent",
                unit="Bps",
                queries=[
                    Query(
                        f"sum by (host) (rate(node_network_transmit_bytes_total{NET_SEL}[{RATE}]))",
                        "{{host}}",
                    )
                ],
                description="Bytes sent per second, loopback and bridges excluded.",
            ),
        ],
    },
)

DASHBOARDS: dict[str, Board] = {
    "predictor.json": PREDICTOR_BOARD,
    "hosts.json": HOSTS_BOARD,
}


def render(board: Board) -> str:
    return json.dumps(build(board), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="folder for the JSON files (default: the grafana role's files/dashboards)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a file in the folder differs from the code",
    )
    args = parser.parse_args(argv)

    stale = []
    for name, board in DASHBOARDS.items():
        path = args.output_dir / name
        text = render(board)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            "out of date (run scripts/build_dashboards.py): " + ", ".join(map(str, stale)),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
