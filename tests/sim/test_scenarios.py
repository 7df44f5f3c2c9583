"""Scenario files: the built-in ones load, a bad one stops with one line naming the key, the
JSON Schema describes the files, and every timeline action is a model that applies itself."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from gateway_support import run

from monitor.cli import main
from monitor.sim.scenarios import (
    SCENARIO_DIR,
    STEP_TYPES,
    ClearValuesStep,
    DisconnectStep,
    ErrorStep,
    GarbageStep,
    ManagedAccountsStep,
    MovesStep,
    PricesStep,
    RateKeys,
    RestartStep,
    Scenario,
    ScenarioError,
    SetCashStep,
    SetFxStep,
    SetQuantityStep,
    SetRatesStep,
    SetValuesStep,
    Step,
    builtin_scenarios,
    load_scenario,
    scenario_json_schema,
)
from monitor.sim.server import SimulatedGateway

ONE_ACCOUNT = {
    "instruments": {"SPY": {"price": 500.0}, "BND": {"price": 72.0}},
    "accounts": [{"id": "DU1", "positions": [{"symbol": "SPY", "quantity": 10}]}],
}
TWO_ACCOUNTS = {**ONE_ACCOUNT, "accounts": [{"id": "DU1"}, {"id": "DU2"}]}


def with_steps(*steps: dict[str, Any], base: dict[str, Any] = ONE_ACCOUNT) -> dict[str, Any]:
    """A valid scenario plus the given timeline."""
    return {**base, "steps": list(steps)}


def problem(source: Any) -> str:
    """The ScenarioError message loading ``source`` gives."""
    with pytest.raises(ScenarioError) as caught:
        load_scenario(source)
    message = str(caught.value)
    assert "\n" not in message, "one line"
    return message


def test_builtin_scenarios_load_by_name():
    """Every shipped scenario loads by bare name and names its accounts."""
    names = builtin_scenarios()
    assert {
        "selloff",
        "healthy",
        "leveraged_etf",
        "concentrated",
        "three_fund",
        "sma_lookahead",
        "eur_base",
    } <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.accounts and scenario.name == name
        SimulatedGateway(scenario).figures(scenario.account_ids[0])


def test_builtin_scenarios_keep_their_documented_defaults():
    """Keys a file leaves out take the documented defaults (sell-off: ARKK is an ETF on ARCA,
    NVDA has no [gateway] server_version, so 176; VTI has no rates, so 0.25 and Reg T 0.5)."""
    scenario = load_scenario("selloff")
    assert scenario.gateway.server_version == 176 and scenario.gateway.farm_notices
    assert scenario.gateway.next_order_id == 1 and not scenario.loop
    vti = scenario.resolved_instruments["VTI"]
    assert (vti.maint_rate, vti.init_rate, vti.regt_rate) == (0.25, 0.25, 0.5)
    assert (vti.sec_type, vti.currency, vti.multiplier, vti.close) == ("STK", "USD", 1.0, None)
    assert scenario.resolved_instruments["ARKK"].exchange == "ARCA"
    inline = load_scenario(
        {"accounts": [{"id": "DU1", "positions": [{"symbol": "XYZ", "quantity": 1, "price": 5.0}]}]}
    )
    xyz = inline.resolved_instruments["XYZ"]
    assert (xyz.exchange, xyz.long_name, xyz.stock_type) == ("NYSE", "XYZ", "COMMON")
    assert 10_000_000 <= xyz.con_id < 99_000_000 and inline.name == "scenario"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"accounts": []}, "accounts: a scenario needs at least one [[accounts]] entry"),
        (
            {"accounts": [{"id": "DU1", "bogus": 1}]},
            "accounts[0].bogus: unknown key (allowed: id, base_currency, account_type, cash, fx, "
            "sma, accrued_cash, look_ahead_next_change, look_ahead_next_change_in, values, "
            "positions, managed)",
        ),
        (
            {"accounts": [{"id": "DU1", "positions": [{"symbol": "X", "quantity": 1}]}]},
            "accounts[0].positions[0]: instrument 'X' needs a price",
        ),
        (
            {"accounts": [{"id": "DU1", "cash": {"EUR": 5.0}}]},
            "accounts[0].fx: no exchange rate to USD for EUR (add fx = { EUR = <USD per EUR> })",
        ),
        (
            with_steps({"at": 1, "error": 1100, "disconnect": True}),
            "steps[0]: a step needs exactly one action of prices, moves, set_values, "
            "clear_values, set_quantity, set_cash, set_fx, error, disconnect, restart, "
            "set_rates, managed_accounts, garbage; got error, disconnect",
        ),
        (
            with_steps({"at": 1, "prices": {"NOPE": 1.0}}),
            "steps[0].prices.NOPE: unknown symbol (not an instrument of the scenario)",
        ),
        (
            {"instruments": {"X": {"price": 1.0, "maint_rate": 25}}, "accounts": [{"id": "DU1"}]},
            "instruments.X.maint_rate: a rate is a fraction (0.25 = 25%), got 25",
        ),
        (
            with_steps({"at": 1}, {"at": 2, "moves": {"SPY": "x"}}),
            "steps[0]: a step needs exactly one action of prices, moves, set_values, "
            "clear_values, set_quantity, set_cash, set_fx, error, disconnect, restart, "
            "set_rates, managed_accounts, garbage; got none (and 1 more problem)",
        ),
        (
            with_steps({"at": 2, "moves": {"SPY": True}}),
            "steps[0].moves.SPY: Input should be a valid number",
        ),
        (
            with_steps({"at": 2, "moves": {"SPY": -1.5}}),
            "steps[0].moves.SPY: Input should be greater than -1",
        ),
        (
            with_steps({"at": 2, "moves": {"all": 0.1}, "account": "DU1"}),
            "steps[0].account: unknown key (allowed: at, note, moves)",
        ),
        (
            with_steps({"at": 2, "set_cash": {"USD": 5.0}}, base=TWO_ACCOUNTS),
            'steps[0].account: set_cash needs account = "..." (the scenario has several accounts)',
        ),
        (
            with_steps({"at": 2, "set_fx": {"EUR": 1.1}, "account": "DU9"}),
            "steps[0].account: unknown account 'DU9' (accounts: DU1)",
        ),
        (
            with_steps({"at": 2, "clear_values": False}),
            "steps[0].clear_values: expected true (every override) or a list of tags",
        ),
        (
            with_steps({"at": 2, "set_cash": {"US": 5.0}}),
            "steps[0].set_cash.US: expected a 3-letter currency code such as USD, got 'US'",
        ),
        (
            with_steps({"at": -1, "disconnect": True}),
            "steps[0].at: Input should be greater than or equal to 0",
        ),
        (
            {**ONE_ACCOUNT, "gateway": {"server_version": 200}},
            "gateway.server_version: Input should be less than or equal to 176",
        ),
        (
            {**ONE_ACCOUNT, "speed": float("inf")},
            "speed: Input should be a finite number",
        ),
        (
            {**ONE_ACCOUNT, "accounts": [{"id": "DU1"}, {"id": "DU1"}]},
            "accounts[1].id: DU1 is listed twice",
        ),
        (
            {
                **ONE_ACCOUNT,
                "accounts": [
                    {"id": "DU1", "positions": [{"symbol": "SPY", "quantity": 1, "price": 9.0}]}
                ],
            },
            "accounts[0].positions[0].price: SPY price = 9.0 conflicts with 500.0 given at "
            "instruments.SPY",
        ),
        (
            {
                **ONE_ACCOUNT,
                "instruments": {"A": {"price": 1.0, "con_id": 7}},
                "accounts": [
                    {
                        "id": "DU1",
                        "positions": [{"symbol": "B", "quantity": 1, "price": 2.0, "con_id": 7}],
                    }
                ],
            },
            "accounts[0].positions[0].con_id: 7 is also the con_id of A",
        ),
        (
            {**ONE_ACCOUNT, "accounts": [{"id": "DU1", "values": {"SMA": False}}]},
            "accounts[0].values.SMA: Input should be a valid string",
        ),
    ],
    ids=[
        "no-accounts",
        "unknown-key",
        "no-price",
        "no-fx",
        "two-actions",
        "unknown-symbol",
        "rate",
        "no-action-and-more",
        "bool-for-number",
        "move-to-nothing",
        "key-of-another-action",
        "account-needed",
        "unknown-account",
        "clear-false",
        "currency-code",
        "negative-time",
        "server-version",
        "infinite",
        "duplicate-account",
        "inline-conflict",
        "duplicate-con-id",
        "override-bool",
    ],
)
def test_invalid_scenarios_are_rejected_with_the_key(broken, message):
    """A broken scenario stops with one line: the key, then what is wrong with it."""
    assert problem(broken) == f"scenario: {message}"


def test_a_file_error_names_the_file_and_the_key(tmp_path, monkeypatch):
    """The message starts with the file as given, then the key path in the file."""
    monkeypatch.chdir(tmp_path)
    steps = "".join(f"[[steps]]\nat = {n}\nmoves = {{ SPY = -0.01 }}\n" for n in range(3))
    Path("selloff.toml").write_text(
        '[instruments.SPY]\nprice = 500.0\n[[accounts]]\nid = "DU1"\n'
        + steps
        + '[[steps]]\nat = 4\nmoves = { SPY = "down" }\n',
        encoding="utf-8",
    )
    assert problem("selloff.toml") == (
        "scenario selloff.toml: steps[3].moves.SPY: Input should be a valid number"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'name = "caf\xe9"\n', "not UTF-8 text (byte 0xe9 at offset 11)"),
        (
            b"[[accounts]\nid = 1\n",
            "invalid TOML: Expected ']]' at the end of an array declaration (at line 1, column 11)",
        ),
        (b"", "the file is empty (a scenario needs at least one [[accounts]])"),
        (b"# only a comment\n", "the file is empty (a scenario needs at least one [[accounts]])"),
        (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (b'name = "x"\n', "accounts: Field required"),
    ],
    ids=["not-utf8", "invalid-toml", "empty", "comments-only", "deep-nesting", "no-accounts"],
)
def test_bad_files_give_one_line(tmp_path, content, message):
    """Unreadable, undecodable, unparsable, empty or absurdly nested files: one line each."""
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    assert problem(path).startswith(f"scenario {path}: {message}")


def test_missing_files_and_directories_are_named(tmp_path):
    """A path that does not exist and a directory each get one line naming the path."""
    missing = tmp_path / "nope.toml"
    assert problem(missing) == f"scenario file {missing} does not exist"
    assert problem(tmp_path) == f"scenario {tmp_path}: is a directory, not a TOML file"


def test_unknown_scenario_name_lists_the_builtin_ones():
    """A name that is neither a file nor built in says which ones exist."""
    listed = ", ".join(builtin_scenarios())
    assert "selloff" in listed
    assert problem("no-such-scenario") == (
        f"unknown scenario 'no-such-scenario': not a file and not a built-in one ({listed})"
    )


# -- the JSON Schema --------------------------------------------------------------------------


def schema_problems(instance: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$"):
    """Where ``instance`` breaks ``schema``: the subset of JSON Schema pydantic emits ($ref,
    anyOf/oneOf, type, const, bounds, required, properties, additionalProperties, items)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return schema_problems(instance, root["$defs"][name], root, at)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            fits = [s for s in schema[combinator] if not schema_problems(instance, s, root, at)]
            wanted = len(fits) == 1 if combinator == "oneOf" else bool(fits)
            return [] if wanted else [f"{at}: fits {len(fits)} of the {combinator} choices"]
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
        "integer": int,
        "number": (int, float),
    }
    kind = schema.get("type")
    is_bool = isinstance(instance, bool)
    if kind and (
        not isinstance(instance, kinds[kind]) or (is_bool and kind in ("integer", "number"))
    ):
        return [f"{at}: not {kind}"]
    if "const" in schema and instance != schema["const"]:
        return [f"{at}: not {schema['const']!r}"]
    bounds = {
        "minimum": lambda v, b: v >= b,
        "maximum": lambda v, b: v <= b,
        "exclusiveMinimum": lambda v, b: v > b,
        "exclusiveMaximum": lambda v, b: v < b,
    }
    found = [
        f"{at}: breaks {key}"
        for key, ok in bounds.items()
        if key in schema and not ok(instance, schema[key])
    ]
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            found.append(f"{at}: fewer than {schema['minItems']} items")
        for index, item in enumerate(instance):
            found += schema_problems(item, schema.get("items", {}), root, f"{at}[{index}]")
    if isinstance(instance, dict):
        found += [
            f"{at}: {key} missing" for key in schema.get("required", ()) if key not in instance
        ]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in instance.items():
            if key in properties:
                found += schema_problems(item, properties[key], root, f"{at}.{key}")
            elif extra is False:
                found.append(f"{at}.{key}: not allowed")
            elif isinstance(extra, dict):
                found += schema_problems(item, extra, root, f"{at}.{key}")
    return found


def test_the_schema_accepts_every_builtin_scenario_file():
    """Each shipped TOML file, as parsed, is valid against the JSON Schema."""
    schema = scenario_json_schema()
    assert schema["$schema"].endswith("/2020-12/schema")
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert schema_problems(data, schema, schema) == [], path.name


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (with_steps({"at": 1, "moves": {"SPY": "x"}}), "$.steps[0]"),
        (with_steps({"at": 1, "moves": {"SPY": 0.1}, "disconnect": True}), "$.steps[0]"),
        ({**ONE_ACCOUNT, "bogus": 1}, "$.bogus"),
        ({**ONE_ACCOUNT, "instruments": {"SPY": {"price": 1.0, "maint_rate": 2}}}, "$.instruments"),
        ({"accounts": []}, "$.accounts"),
    ],
    ids=["wrong-type", "two-actions", "unknown-key", "rate-above-one", "no-accounts"],
)
def test_the_schema_rejects_what_the_models_reject(broken, where):
    """The schema is not merely permissive: files the loader refuses break it too."""
    schema = scenario_json_schema()
    problems = schema_problems(broken, schema, schema)
    assert problems and problems[0].startswith(where)
    with pytest.raises(ScenarioError):
        load_scenario(broken)


def test_simulate_gateway_schema_prints_the_json_schema(capsys):
    """`margin-monitor simulate-gateway --schema` prints the schema as JSON and exits 0."""
    assert main(["simulate-gateway", "--schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == scenario_json_schema()
    assert {kind.__name__ for kind in STEP_TYPES.values()} <= set(printed["$defs"])


# -- timeline actions -------------------------------------------------------------------------

EXAMPLES: list[Step] = [
    PricesStep(at=1.0, prices={"SPY": 480.0}),
    MovesStep(at=2.0, note="slide", moves={"all": -0.05, "BND": 0.0}),
    SetValuesStep(at=3.0, account="DU1", set_values={"SMA": "-1500.00", "Cushion": ""}),
    ClearValuesStep(at=4.0, clear_values=["SMA"]),
    ClearValuesStep(at=4.5, clear_values=True),
    SetQuantityStep(at=5.0, account="DU1", set_quantity={"BND": 100.0}, adjust_cash=False),
    SetCashStep(at=6.0, account="DU1", set_cash={"USD": 2500.0}),
    SetFxStep(at=7.0, set_fx={"EUR": 1.1}),
    ErrorStep(at=8.0, error=1100, message="link down", req_id=-1),
    DisconnectStep(at=9.0, disconnect=True),
    RestartStep(at=10.0, restart=0.2),
    SetRatesStep(at=11.0, account="DU1", set_rates={"SPY": RateKeys(maint_rate=0.5)}),
    ManagedAccountsStep(at=12.0, managed_accounts=["DU1"]),
    GarbageStep(at=13.0, garbage="stalled_frame"),
]


def test_every_action_has_an_example():
    """The examples below cover each action the timeline knows."""
    assert {step.action for step in EXAMPLES} == set(STEP_TYPES)


@pytest.mark.parametrize("step", EXAMPLES, ids=lambda step: f"{step.action}@{step.at:g}")
def test_each_action_model_round_trips(step):
    """Dumped to a dict or JSON and validated again (through the scenario's step dispatch), a
    step is equal to itself; the dump is what a file would say."""
    kind = type(step)
    assert kind.model_validate(step.model_dump()) == step
    assert kind.model_validate_json(step.model_dump_json()) == step
    dumped = step.model_dump(exclude_defaults=True)
    assert set(dumped) - {"at", "note", "account", "message", "req_id", "adjust_cash"} == {
        step.action
    }
    assert load_scenario(with_steps(dumped)).steps == [step]


def test_builtin_scenarios_round_trip():
    """A loaded built-in scenario, dumped and loaded again, is the same scenario."""
    for name in builtin_scenarios():
        scenario = load_scenario(name)
        assert Scenario.model_validate(scenario.model_dump()) == scenario, name


def test_steps_play_in_time_order_and_one_account_is_the_default():
    """Steps sort by `at` (same-time steps keep file order); set_cash in a one-account
    scenario applies to that account."""
    scenario = load_scenario(
        with_steps(
            {"at": 5, "set_cash": {"usd": 100.0}},
            {"at": 1, "moves": {"ALL": -0.1}},
            {"at": 1, "error": 1100},
        )
    )
    assert [step.action for step in scenario.steps] == ["moves", "error", "set_cash"]
    assert scenario.steps[2] == SetCashStep(at=5.0, account="DU1", set_cash={"USD": 100.0})
    assert scenario.steps[0] == MovesStep(at=1.0, moves={"all": -0.1})


def test_every_action_applies_itself_to_the_gateway(simulated_gateway):
    """apply_step runs each action's own apply: prices, moves, overrides, a trade, cash, FX,
    an error with its effect, a disconnect and a restart all change the real gateway."""
    scenario = {
        "instruments": {
            "SPY": {"price": 500.0},
            "BND": {"price": 72.0},
            "SAP": {"price": 200.0, "currency": "EUR"},
        },
        "accounts": [
            {
                "id": "DU1",
                "cash": {"USD": 1000.0},
                "fx": {"EUR": 1.0},
                "positions": [{"symbol": "SPY", "quantity": 10}],
            }
        ],
    }

    async def body() -> None:
        async with simulated_gateway(scenario) as gateway:
            for step in EXAMPLES:
                await gateway.apply_step(step)
                figures = gateway.figures("DU1")
                rows = {(tag, ccy): text for tag, text, ccy in gateway.account_values("DU1")}
                if isinstance(step, PricesStep):
                    assert gateway.price("SPY") == 480.0
                elif isinstance(step, MovesStep):
                    assert (gateway.price("SPY"), gateway.price("BND")) == (456.0, 72.0)
                elif isinstance(step, SetValuesStep):
                    assert rows[("SMA", "USD")] == "-1500.00" and rows[("Cushion", "")] == ""
                elif isinstance(step, ClearValuesStep) and step.clear_values is True:
                    assert rows[("Cushion", "")] != ""
                elif isinstance(step, ClearValuesStep):
                    assert rows[("SMA", "USD")] != "-1500.00" and rows[("Cushion", "")] == ""
                elif isinstance(step, SetQuantityStep):
                    held = {h.symbol: h.quantity for h in gateway.state.holdings("DU1")}
                    assert held == {"SPY": 10.0, "BND": 100.0}
                    assert figures["TotalCashValue"] == 1000.0  # adjust_cash = false
                elif isinstance(step, SetCashStep):
                    assert figures["TotalCashValue"] == 2500.0
                elif isinstance(step, SetFxStep):
                    assert rows[("ExchangeRate", "EUR")] == "1.1000000"
                elif isinstance(step, ErrorStep):
                    assert not gateway.link_up  # 1100: nothing streams until 1101/1102
                elif isinstance(step, RestartStep):
                    await gateway.wait_until(lambda: gateway.restarts == 1 and gateway.listening)
                elif isinstance(step, SetRatesStep):
                    # SPY 10 x 456 at 50% + BND 100 x 72 at 25%
                    assert figures["MaintMarginReq"] == pytest.approx(2_280.0 + 1_800.0)
                elif isinstance(step, ManagedAccountsStep):
                    assert gateway.accounts == ["DU1"]
            assert gateway.steps_applied == len(EXAMPLES)

    run(body())


# -- the command line -------------------------------------------------------------------------


def test_simulate_gateway_reports_a_bad_scenario_in_one_line(tmp_path, capsys):
    """simulate-gateway --scenario with a broken file: one line on stderr, exit code 2."""
    path = tmp_path / "broken.toml"
    path.write_text('[[accounts]]\nid = "DU1"\ncash = { USD = "lots" }\n', encoding="utf-8")
    assert main(["simulate-gateway", "--scenario", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"margin-monitor: scenario {path}: accounts[0].cash.USD: Input should be a valid number\n"
    )


@pytest.mark.slow
def test_demo_reports_an_unknown_scenario_in_one_line():
    """demo --scenario with an unknown name: one line on stderr listing the built-in ones."""
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "demo", "--scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "margin-monitor: unknown scenario 'nope': not a file and not a built-in one "
        f"({', '.join(builtin_scenarios())})"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--speed", "0"],
        ["simulate-gateway", "--speed", "-2"],
        ["simulate-gateway", "--cadence", "0"],
        ["simulate-gateway", "--cadence", "nan"],
    ],
    ids=["demo-speed-zero", "speed-negative", "cadence-zero", "cadence-nan"],
)
def test_speed_and_cadence_must_be_above_zero(argv, capsys):
    """A zero, negative or non-finite --speed/--cadence is refused by argparse (exit 2) with one
    error line naming the option."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert f"argument {argv[1]}: must be a number above zero, got {argv[2]}" in error
