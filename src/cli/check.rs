//! `streamguard check`: load every config as the server would and report.

use std::{path::Path, process::ExitCode};

use super::defaults::DefaultsArgs;
use crate::engine::{BuildSettings, Guardrails, Registry};

/// `streamguard check`: one line per config, in directory order (`ok` with
/// its summary and warnings, or `error` with the reasons), then a summary
/// and, when a flow was unknown, the flows streamguard knows, once.
/// The line of a config that loads, and its warnings.
fn print_ok(g: &Guardrails) {
    let c = g.config();
    let streaming = match (g.check_streaming(), c.streaming()) {
        (Ok(()), Some(_)) => "streaming: yes".to_string(),
        (Ok(()), None) => "streaming: yes (server default)".to_string(),
        (Err(e), _) => format!("streaming: no (rule {})", e.rule()),
    };
    println!(
        "ok     {}  main={}  input={}  output={}  {streaming}",
        c.id(),
        c.main_model().map_or("(from the request)", |m| m.model()),
        c.input().flows.len(),
        c.output().flows.len()
    );
    for w in g.warnings() {
        println!("    warning: {w}");
    }
}

pub fn run(root: &Path, defaults: &DefaultsArgs) -> ExitCode {
    let settings = match defaults.resolve() {
        Ok(d) => BuildSettings {
            streaming_default: d.streaming,
            main_model: d.main_model,
            request_model: d.request_model,
            pin_main_model: d.pin_main_model,
            actions_server: d.actions_server,
            ..Default::default()
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let each = match Registry::load_each(root, &settings) {
        Ok(each) => each,
        Err(e) => {
            eprintln!("{}: invalid config", root.display());
            for line in e.to_string().lines() {
                eprintln!("  error: {line}");
            }
            return ExitCode::FAILURE;
        }
    };
    let (total, mut failed, mut unknown_flow) = (each.len(), 0, false);
    for (id, built) in each {
        match built {
            Ok(g) => print_ok(&g),
            Err(e) => {
                failed += 1;
                println!("error  {id}");
                // The known flows are listed once, below.
                let mut in_list = false;
                for line in e.to_string().lines() {
                    if in_list && line.starts_with("  - `") {
                        continue;
                    }
                    in_list = false;
                    let line = match line.split_once(crate::rails::KNOWN_FLOWS) {
                        Some((head, _)) => {
                            (in_list, unknown_flow) = (true, true);
                            head
                        }
                        None => line,
                    };
                    println!("    {line}");
                }
            }
        }
    }
    if failed == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{}: {failed} of {total} configs have errors",
        root.display()
    );
    if unknown_flow {
        for stage in [crate::rails::Stage::Input, crate::rails::Stage::Output] {
            eprintln!(
                "the {stage} rail flows streamguard knows:{}",
                crate::rails::known_flows(stage)
            );
        }
    }
    ExitCode::FAILURE
}
