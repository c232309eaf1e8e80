//! Invalid files: every diagnostic, with its line and column.

use super::*;

fn check(src: &str, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|e| format!("g.toml:{e}")).collect();
    assert_eq!(errors(src), expected);
}

const SOC_INPUTS: &str = r#"inputs = ["battery.current", "battery.voltage"]"#;
const OUT_INPUTS: &str = r#"inputs = ["smooth", "meter", "soc.energy"]"#;

#[test]
fn toml_syntax_errors_point_at_the_parser_position() {
    check(
        "[graph\nname = 1\n",
        &["1:7: error: invalid TOML: unclosed table, expected `]`"],
    );
}

#[test]
fn bytes_that_are_not_text_are_refused_at_the_first_bad_byte() {
    let utf8 = load("g.toml", b"[graph]\nname = \"\xff\"\n", &registry()).unwrap_err();
    assert_eq!(
        utf8.to_string(),
        "g.toml:2:9: error: not UTF-8 text: invalid byte 0xff; graph files are UTF-8 TOML text"
    );
    let binary = load("g.toml", b"[graph]\n\x00\x01", &registry()).unwrap_err();
    assert_eq!(
        binary.to_string(),
        "g.toml:2:1: error: not a text file: control byte 0x00; graph files are UTF-8 TOML text"
    );
}

#[test]
fn unknown_tables_and_graph_keys_name_the_valid_ones() {
    check(
        &home_with("capacity = 1024", "layot = \"single\"\n[sourcs]"),
        &[
            "3:1: error: unknown key `layot` in [graph]; did you mean `layout`? valid keys: name, layout, capacity, overflow",
            "4:2: error: unknown table `[sourcs]`; did you mean `[sources]`? valid tables: [graph], [ha], [sources], [vertices], [sinks], [[edges]]",
        ],
    );
}

#[test]
fn nodes_in_an_unknown_table_are_reported_once() {
    check(
        &home_with("[vertices.smooth]", "[vertexes.smooth]"),
        &["17:2: error: unknown table `[vertexes]`; did you mean `[vertices]`? valid tables: [graph], [ha], [sources], [vertices], [sinks], [[edges]]"],
    );
}

#[test]
fn unknown_kinds_suggest_the_nearest_of_their_role() {
    check(
        &home_with(r#"kind = "ewma""#, r#"kind = "ewm""#),
        &["18:8: error: unknown vertex kind `ewm`; did you mean `ewma`? known kinds: ewma, knobs, soc"],
    );
    check(
        &home_with("[sinks.out]", "[vertices.out]"),
        &["24:8: error: `stdout` is a sink kind, declare it under [sinks]"],
    );
    check(
        &home_with("version = 1", "version = 3"),
        &["19:11: error: vertex kind `ewma` has no version 3; known versions: 1, 2"],
    );
    check(
        &home_with("[sources.meter]\nkind = \"sim.meter\"", "[sources.meter]"),
        &["9:10: error: source `meter` has no `kind`; known source kinds: sim.battery, sim.gen, sim.meter"],
    );
}

#[test]
fn parameters_are_checked_against_the_kind() {
    check(
        &home_with("alpha = 0.2", "alpah = 0.2"),
        &["21:1: error: unknown parameter `alpah` of `ewma`; did you mean `alpha`? parameters of `ewma`: alpha"],
    );
    check(
        &home_with("alpha = 0.2", "alpha = 3"),
        &["21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got 3"],
    );
    check(
        &home_with("capacity_ah = 100", ""),
        &["12:11: error: vertex `soc` needs parameter `capacity_ah` of `soc`: a number from 1 to 10000"],
    );
}

#[test]
fn every_parameter_type_is_checked_and_every_error_reported() {
    let src = r#"[sources.battery]
kind = "sim.battery"
[vertices.k]
kind = "knobs"
inputs = ["battery.*"]
count = 2.5
on = "yes"
window = "5 parsecs"
mode = "maen"
label = 3
tags = ["Bad", "ok", "ok"]
[sinks.out]
kind = "stdout"
inputs = ["k"]
"#;
    check(
        src,
        &[
            "3:11: error: vertex `k` needs parameter `gain` of `knobs`: a number from -10 to 10",
            "6:9: error: parameter `count` of `knobs` must be an integer from 1 to 10, got 2.5",
            "7:6: error: parameter `on` of `knobs` must be true or false, got \"yes\"",
            "8:10: error: parameter `window` of `knobs` must be a duration from 1s to 1h (such as \"500ms\", \"5s\", \"2m\", \"1h\"), got \"5 parsecs\"",
            "9:8: error: parameter `mode` of `knobs` must be one of \"mean\", \"max\", got \"maen\"; did you mean `mean`?",
            "10:9: error: parameter `label` of `knobs` must be a string, got 3",
            "11:9: error: parameter `tags` of `knobs`: \"Bad\" is not a valid name; names are lowercase letters, digits and `_` (dots may separate parts)",
            "11:22: error: parameter `tags` of `knobs` lists `ok` twice",
        ],
    );
    check(
        "[sources.gen]\nkind = \"sim.gen\"\nchannels = [\"count\"]\n[sinks.out]\nkind = \"stdout\"\ninputs = [\"gen.*\"]\n",
        &["3:12: error: parameter `channels` of `sim.gen` names `count`, which is already an output of `sim.gen`; outputs: gen.count"],
    );
}

#[test]
fn unknown_inputs_say_what_exists() {
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.curent", "battery.voltage"]"#),
        &["14:11: error: vertex `soc` has no input `battery.curent`; did you mean `battery.current`? existing outputs: battery.current, battery.voltage"],
    );
    check(
        &home_with(OUT_INPUTS, r#"inputs = ["smooth", "meter.x", "battery", "batery.soc", "out"]"#),
        &[
            "25:21: error: sink `out` has no input `meter.x`: `meter` has one output, named `meter`",
            "25:32: error: sink `out` has no input `battery`: `battery` has several outputs, name them: battery.current, battery.voltage (or `battery.*` for all)",
            "25:43: error: sink `out` has no input `batery.soc`: there is no node `batery`; existing outputs: battery.current, battery.voltage, meter, soc, soc.energy, smooth",
            "25:57: error: sink `out` has no input `out`: `out` is a sink and has no outputs",
        ],
    );
}

#[test]
fn inputs_must_match_the_role_and_arity() {
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.current"]"#),
        &["14:10: error: vertex `soc` (kind `soc`) takes exactly 2 inputs (current, voltage), got 1: battery.current"],
    );
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.*", "meter"]"#),
        &["14:10: error: vertex `soc` (kind `soc`) takes exactly 2 inputs (current, voltage), got 3: battery.current, battery.voltage, meter"],
    );
    check(
        &home_with("period = \"500ms\"", "period = \"500ms\"\ninputs = [\"meter\"]\nworker = \"w1\""),
        &[
            "8:1: error: source `battery` takes no inputs: sources read from devices; remove `inputs`",
            "9:10: error: source `battery` cannot be pinned to a worker: sources run on the ingress worker; remove `worker`",
        ],
    );
    check(
        &home_with(OUT_INPUTS, ""),
        &["23:8: error: sink `out` has no inputs; add `inputs = [...]` naming the channels it reads"],
    );
    check(
        &home_with(r#"inputs = ["soc"]"#, "inputs = []"),
        &["20:10: error: vertex `smooth` has no inputs; name the channels it reads (`ewma` reads value)"],
    );
}

#[test]
fn a_channel_is_read_once() {
    check(
        &home_with(
            OUT_INPUTS,
            r#"inputs = ["battery.*", "smooth", "battery.voltage"]"#,
        ),
        &["25:34: error: sink `out` reads `battery.voltage` twice"],
    );
}

#[test]
fn node_ids_are_unique_across_tables() {
    check(
        &home_with("[sinks.out]", "[sinks.soc]"),
        &["23:8: error: duplicate node id `soc`: already declared as a vertex on line 12; ids are unique across [sources], [vertices] and [sinks]"],
    );
    check(
        "[sources.Battery]\nkind = \"sim.battery\"\n[sinks]\nout = 3\n",
        &[
            "1:10: error: `Battery` is not a valid node id: use lowercase letters, digits and `_`, starting with a letter",
            "4:1: error: sink `out` must be a table such as [sinks.out] with `kind = ...` below it",
        ],
    );
    check("", &["1:1: error: the graph has no sources; declare one such as [sources.battery] with a `kind`"]);
}

#[test]
fn cycles_are_printed_as_their_path() {
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.current", "smooth"]"#),
        &["14:1: error: cycle: soc -> smooth -> soc"],
    );
}

#[test]
fn edge_settings_must_name_an_existing_edge() {
    check(
        &home_with("from = \"soc\"", "from = \"battery\"").replace("to = \"smooth\"", "to = \"out\""),
        &["29:6: error: there is no edge from `battery` to `out`: `out` does not read from `battery`; `battery` feeds: soc"],
    );
    check(
        &home_with("to = \"smooth\"", "to = \"smoth\"\nweight = 2"),
        &[
            "29:6: error: no node `smoth`; did you mean `smooth`? nodes: battery, meter, soc, smooth, out",
            "30:1: error: unknown key `weight` in [[edges]]; valid keys: from, to, capacity, overflow",
        ],
    );
    check(
        &format!("{HOME}[[edges]]\nfrom = \"soc\"\nto = \"smooth\"\n[[edges]]\nfrom = \"soc\"\n"),
        &[
            "32:1: error: settings for the edge from `soc` to `smooth` are given twice; the first is on line 27",
            "35:1: error: edge needs `from` and `to` (node ids); missing: to",
        ],
    );
}

#[test]
fn capacities_overflow_and_layout_are_checked() {
    check(
        &home_with("capacity = 256", "capacity = 99999999")
            .replace("capacity = 1024", "capacity = 1\noverflow = \"drop\""),
        &[
            "3:12: error: `capacity` must be an integer from 2 to 16777216 (records), got 1",
            "4:12: error: `overflow` must be one of \"block\", \"drop_oldest\", \"drop_newest\", got \"drop\"",
            "31:12: error: `capacity` must be an integer from 2 to 16777216 (records), got 99999999",
        ],
    );
    check(
        &home_with("capacity = 1024", "layout = \"chain\""),
        &["3:10: error: `layout` must be one of \"single\", \"chains\", \"spread\", got \"chain\"; did you mean `chains`?"],
    );
}

#[test]
fn worker_pins_that_feed_each_other_are_refused() {
    let src = home_with("alpha = 0.2", "alpha = 0.2\nworker = \"a\"")
        .replace("capacity_ah = 100", "capacity_ah = 100\nworker = \"b\"")
        .replace("kind = \"stdout\"", "kind = \"stdout\"\nworker = \"b\"");
    check(
        &src,
        &["16:10: error: worker pins make workers feed each other: b -> a -> b; pin these nodes to one worker or remove the pins"],
    );
}

#[test]
fn crlf_files_and_toml_number_forms_load() {
    let crlf = HOME.replace('\n', "\r\n");
    assert_eq!(load_str(&crlf).unwrap().name, "home");
    check(
        &home_with("alpha = 0.2", "alpha = 3").replace('\n', "\r\n"),
        &["21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got 3"],
    );
    let hex = load_str(&home_with("capacity_ah = 100", "capacity_ah = 0x10")).unwrap();
    assert_eq!(
        hex.plan.node("soc").unwrap().params.float("capacity_ah"),
        Some(16.0)
    );
    check(
        &home_with("alpha = 0.2", "alpha = nan\nfoo = 1979-05-27"),
        &[
            "21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got nan",
            "22:1: error: unknown parameter `foo` of `ewma`; parameters of `ewma`: alpha",
        ],
    );
}

#[test]
fn duplicate_keys_and_tables_are_syntax_errors_naming_the_key() {
    check(
        "[graph]\nname = \"a\"\n[graph]\nname = \"b\"\n",
        &[
            "3:2: error: invalid TOML: duplicate key `graph`; each key and table may appear once",
            "4:1: error: invalid TOML: duplicate key `name`; each key and table may appear once",
        ],
    );
}

#[test]
fn a_bad_entry_does_not_cause_follow_up_errors() {
    // The number is reported; soc's arity is not, nor are inputs that read
    // from a node whose kind is unknown.
    check(
        &home_with(SOC_INPUTS, r#"inputs = ["battery.current", 3]"#)
            .replace(r#"kind = "ewma""#, r#"kind = "nope""#),
        &[
            "14:30: error: each input must be a channel name such as \"battery.soc\", got 3",
            "18:8: error: unknown vertex kind `nope`; known kinds: ewma, knobs, soc",
        ],
    );
}

#[test]
fn values_spanning_lines_are_shown_on_one() {
    check(
        &home_with("alpha = 0.2", "alpha = [\n  1,\n  2,\n]"),
        &["21:9: error: parameter `alpha` of `ewma` must be a number from 0 to 1, got [ 1, 2, ]"],
    );
    check(
        &home_with("[sinks.out]", "[sinks.\"o\\nut\"]"),
        &["23:8: error: `o\\nut` is not a valid node id: use lowercase letters, digits and `_`, starting with a letter"],
    );
}
