//! The Cloud Run services a build deployed, read from its steps when no substitution names one.
//!
//! Many pipelines name their service nowhere but in the deploy command itself
//! (`gcloud run deploy api --region=europe-west1 --no-traffic`), so a build without
//! `_SERVICE_NAME` is read for such commands. Cloud Build puts each step in the message as it
//! ran it (`name`, `entrypoint`, `args`, `script`, `env`), with the build's substitutions already
//! expanded. A command is found in three shapes:
//!
//! - gcloud itself runs the step: `entrypoint: gcloud`, or no entrypoint and the gcloud builder
//!   image (`gcr.io/cloud-builders/gcloud`, whose default entrypoint is gcloud), or no
//!   entrypoint and `args` starting with `gcloud`;
//! - a shell runs a script: `entrypoint: bash` (or `sh`, any path) with `-c SCRIPT` in `args`
//!   (`-c` may be grouped, `-ec`), or the step's `script` field; every simple command of the
//!   script is read (`\` line continuations, quotes, `;`, `&&`, `||`, `|`, newlines, comments);
//! - the image does not matter: what runs is the command line.
//!
//! Each `gcloud [alpha|beta] run deploy [SERVICE]` or `gcloud … run services update [SERVICE]`
//! command becomes a [`DeployCommand`]: a [`DeployTarget`] when it deploys a revision with
//! `--no-traffic` to Cloud Run (fully managed), or the reason it starts no rollout (no
//! `--no-traffic`: the new revision already serves everything; `--platform gke`; a service or
//! region still holding a `$VAR` the message did not expand; an id that is not valid). Its region
//! comes from `--region` (or the step's `CLOUDSDK_RUN_REGION`) and its project from `--project`
//! (or `CLOUDSDK_CORE_PROJECT`); when absent the build fills them in
//! ([`super::BuildNotification::targets`]) and then [`super::Scope::resolve`], as for any event.
//!
//! Pure: no I/O, no rollout types, never panics on input; the work is linear in the message and
//! the number of commands read is bounded ([`MAX_COMMANDS`]).

use serde_json::{Map, Value};

use super::lenient;
use crate::ids::text::excerpt;
use crate::ids::{ProjectId, Region, ServiceName};

/// Most deploy commands read from one build; later ones are reported as skipped together.
pub const MAX_COMMANDS: usize = 32;

/// Longest quotation of a message's text in a reason.
const QUOTE_CHARS: usize = 64;

/// A service a deploy command gave a new revision without traffic, and where, as far as the
/// command says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployTarget {
    pub service: ServiceName,
    /// `--region` (or the step's `CLOUDSDK_RUN_REGION`).
    pub region: Option<Region>,
    /// `--project` (or the step's `CLOUDSDK_CORE_PROJECT`).
    pub project: Option<ProjectId>,
}

/// One `gcloud run deploy` or `gcloud run services update` command of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployCommand {
    /// Where it is, for people: `step #2 (deploy)` (Cloud Build numbers steps from 0).
    pub step: String,
    /// The service it rolls out, or why it starts no rollout.
    pub outcome: Result<DeployTarget, String>,
}

/// Every deploy command of `steps` (a build's `steps` array; anything else has none), in order.
pub fn deploy_commands(steps: Option<&Value>) -> Vec<DeployCommand> {
    let mut found = Vec::new();
    let mut more = 0usize;
    let steps = steps
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (index, step) in steps.iter().enumerate() {
        let Some(step) = step.as_object() else {
            continue;
        };
        let label = match lenient::non_empty_text(step, "id") {
            Some(id) => format!("step #{index} ({})", excerpt(&id, QUOTE_CHARS)),
            None => format!("step #{index}"),
        };
        let env = step_env(step);
        for args in gcloud_invocations(step) {
            let Some(outcome) = deploy_outcome(&args, &env) else {
                continue;
            };
            if found.len() == MAX_COMMANDS {
                more += 1;
                continue;
            }
            found.push(DeployCommand {
                step: label.clone(),
                outcome,
            });
        }
    }
    if more > 0 {
        found.push(DeployCommand {
            step: "later steps".into(),
            outcome: Err(format!(
                "{more} more deploy commands not read: one build is read for at most {MAX_COMMANDS}"
            )),
        });
    }
    found
}

/// The step's `env` entries (`KEY=VALUE`) that gcloud reads as properties.
struct StepEnv {
    region: Option<String>,
    project: Option<String>,
    platform: Option<String>,
}

fn step_env(step: &Map<String, Value>) -> StepEnv {
    let entries: Vec<String> = lenient::field(step, "env")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(lenient::scalar_text).collect())
        .unwrap_or_default();
    let get = |key: &str| {
        entries.iter().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    };
    StepEnv {
        region: get("CLOUDSDK_RUN_REGION"),
        project: get("CLOUDSDK_CORE_PROJECT"),
        platform: get("CLOUDSDK_RUN_PLATFORM"),
    }
}

/// The arguments of every gcloud invocation the step runs (after the `gcloud` word).
fn gcloud_invocations(step: &Map<String, Value>) -> Vec<Vec<String>> {
    if let Some(script) = lenient::field(step, "script").and_then(Value::as_str)
        && !script.trim().is_empty()
    {
        return script_invocations(script);
    }
    let args: Vec<String> = lenient::field(step, "args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(lenient::scalar_text).collect())
        .unwrap_or_default();
    let entrypoint = lenient::non_empty_text(step, "entrypoint");
    let image = lenient::non_empty_text(step, "name").unwrap_or_default();
    match entrypoint.as_deref().map(basename) {
        Some("gcloud") => vec![args],
        Some(shell) if is_shell(shell) => shell_script(&args)
            .map(script_invocations)
            .unwrap_or_default(),
        Some(_) => Vec::new(),
        None if is_gcloud_builder(&image) => vec![args],
        None => match args.split_first() {
            Some((first, rest)) if basename(first) == "gcloud" => vec![rest.to_vec()],
            Some((first, rest)) if is_shell(basename(first)) => shell_script(rest)
                .map(script_invocations)
                .unwrap_or_default(),
            _ => Vec::new(),
        },
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_shell(name: &str) -> bool {
    matches!(name, "bash" | "sh" | "dash" | "ash" | "zsh")
}

/// Whether `image` is Cloud Build's gcloud builder, whose default entrypoint is gcloud (any
/// registry mirror of `cloud-builders/gcloud` or `gcloud-slim`, any tag or digest).
fn is_gcloud_builder(image: &str) -> bool {
    let repository = image.split('@').next().unwrap_or(image);
    let repository = match repository.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => repository,
    };
    let mut segments = repository.rsplit('/');
    matches!(segments.next(), Some("gcloud" | "gcloud-slim"))
        && segments.any(|s| s == "cloud-builders")
}

/// The script a shell is given with `-c` among `args` (`-c`, or a group of short options
/// containing `c`, such as `-ec`): the argument after it.
fn shell_script(args: &[String]) -> Option<&str> {
    let at = args.iter().position(|a| {
        a.len() > 1 && a.starts_with('-') && !a.starts_with("--") && a[1..].contains('c')
    })?;
    args.get(at + 1).map(String::as_str)
}

/// The arguments of each gcloud invocation in a shell script.
fn script_invocations(script: &str) -> Vec<Vec<String>> {
    simple_commands(script)
        .into_iter()
        .filter_map(|words| {
            let at = words.iter().position(|w| basename(w) == "gcloud")?;
            Some(words[at + 1..].to_vec())
        })
        .collect()
}

/// A shell script split into simple commands, each a list of words with quotes removed.
///
/// Enough of the shell's grammar for deploy commands: `'…'` and `"…"` (with `\` escapes in
/// the latter), `\` outside quotes, `\`-newline joining lines, `#` comments, and `;`, `&`, `|`,
/// newlines, parentheses and backquotes ending a command. A redirection ends the command too
/// (its target is not an argument), and a file descriptor number before it is dropped.
/// Variables are not expanded: a `$` stays in the word.
fn simple_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(escaped) => {
                    word.push(escaped);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some('\n') => {
                                chars.next();
                            }
                            Some(&e @ ('"' | '\\' | '$' | '`')) => {
                                chars.next();
                                word.push(e);
                            }
                            _ => word.push('\\'),
                        },
                        other => word.push(other),
                    }
                }
            }
            '#' if !in_word => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                end_word(&mut words, &mut word, &mut in_word);
                commands.push(std::mem::take(&mut words));
            }
            '>' | '<' => {
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                end_word(&mut words, &mut word, &mut in_word);
                commands.push(std::mem::take(&mut words));
            }
            ';' | '&' | '|' | '\n' | '(' | ')' | '`' => {
                end_word(&mut words, &mut word, &mut in_word);
                commands.push(std::mem::take(&mut words));
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    commands.push(words);
    commands.retain(|c| !c.is_empty());
    commands
}

/// gcloud flags (spelled without `--`) that take no value, besides every `--no-…` and
/// `--clear-…` flag: a word after one of these is an argument, not the flag's value.
const SWITCHES: &[&str] = &[
    "allow-unauthenticated",
    "allow-unencrypted-build",
    "async",
    "automatic-updates",
    "cpu-boost",
    "cpu-throttling",
    "default-url",
    "deploy-health-check",
    "gpu-zonal-redundancy",
    "help",
    "iap",
    "invoker-iam-check",
    "log-http",
    "quiet",
    "session-affinity",
    "use-http2",
    "user-output-enabled",
];

/// A gcloud command line, split into its positional words and its flags.
struct CommandLine {
    positionals: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl CommandLine {
    fn parse(args: &[String]) -> CommandLine {
        let mut positionals = Vec::new();
        let mut flags = Vec::new();
        let mut i = 0;
        while let Some(arg) = args.get(i) {
            i += 1;
            if arg == "--" {
                positionals.extend(args[i..].iter().cloned());
                break;
            }
            if let Some(flag) = arg.strip_prefix("--") {
                if let Some((name, value)) = flag.split_once('=') {
                    flags.push((name.to_owned(), Some(value.to_owned())));
                } else if SWITCHES.contains(&flag)
                    || flag.starts_with("no-")
                    || flag.starts_with("clear-")
                {
                    flags.push((flag.to_owned(), None));
                } else {
                    let value = args.get(i).filter(|v| !v.starts_with('-')).cloned();
                    i += usize::from(value.is_some());
                    flags.push((flag.to_owned(), value));
                }
            } else if arg.len() > 1 && arg.starts_with('-') {
                // `-q`, `-h`: gcloud's short flags take no value.
            } else {
                positionals.push(arg.clone());
            }
        }
        CommandLine { positionals, flags }
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    /// The value of the last `--name` (gcloud keeps the last one given).
    fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// What a gcloud invocation with `args` means for cutover: `None` when it is not a Cloud Run
/// deploy or service update at all.
fn deploy_outcome(args: &[String], env: &StepEnv) -> Option<Result<DeployTarget, String>> {
    let line = CommandLine::parse(args);
    let words: Vec<&str> = line.positionals.iter().map(String::as_str).collect();
    let words = match words.split_first() {
        Some((&("alpha" | "beta"), rest)) => rest,
        _ => &words[..],
    };
    let (command, operands) = match words {
        ["run", "deploy", rest @ ..] => ("gcloud run deploy", rest),
        ["run", "services", "update", rest @ ..] => ("gcloud run services update", rest),
        _ => return None,
    };
    Some(target(&line, env, command, operands))
}

fn target(
    line: &CommandLine,
    env: &StepEnv,
    command: &str,
    operands: &[&str],
) -> Result<DeployTarget, String> {
    let name = match operands {
        [name] => *name,
        [] => return Err(format!("`{command}` names no service")),
        _ => {
            return Err(format!(
                "`{command}` has {} operands where one service is expected: {}",
                operands.len(),
                quote(&operands.join(" "))
            ));
        }
    };
    let command = format!("{command} {}", quote(name));
    let why_not = |why: String| format!("`{command}`: {why}");
    // A cluster (`--cluster`, `--context`, `--kubeconfig`) means Cloud Run for Anthos.
    let on_cluster = ["cluster", "context", "kubeconfig"]
        .into_iter()
        .any(|f| line.has(f))
        .then_some("gke");
    let platform = line
        .value("platform")
        .or(env.platform.as_deref())
        .or(on_cluster);
    if let Some(platform) = platform.filter(|p| *p != "managed") {
        return Err(why_not(format!(
            "--platform {} is not Cloud Run (fully managed), which cutover rolls out",
            quote(platform)
        )));
    }
    if line.has("regions") {
        return Err(why_not(
            "deploys to several regions at once (--regions), which cutover does not roll out"
                .into(),
        ));
    }
    if !line.has("no-traffic") {
        return Err(why_not(
            "no --no-traffic: the new revision already serves all traffic, so there is nothing to roll out"
                .into(),
        ));
    }
    let service = checked(name, "service", ServiceName::parse).map_err(why_not)?;
    let region = setting(line, "region", env.region.as_deref(), Region::parse).map_err(why_not)?;
    let project =
        setting(line, "project", env.project.as_deref(), ProjectId::parse).map_err(why_not)?;
    Ok(DeployTarget {
        service,
        region,
        project,
    })
}

/// The id `--flag` gives (else the step's environment, `from_env`), checked; `None` when
/// neither says.
fn setting<T, E: std::fmt::Display>(
    line: &CommandLine,
    flag: &str,
    from_env: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, String> {
    line.value(flag)
        .or(from_env)
        .map(|raw| checked(raw, flag, parse))
        .transpose()
}

/// `raw` as a checked id, or why not: a variable left in it (the message expands the build's
/// substitutions, not the shell's or the step's own variables), or the id's rule.
fn checked<T, E: std::fmt::Display>(
    raw: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, String> {
    if raw.contains('$') {
        return Err(format!(
            "the {what} `{}` is a variable the build message does not expand, so cutover cannot tell which {what} it is",
            quote(raw)
        ));
    }
    parse(raw).map_err(|e| e.to_string())
}

fn quote(s: &str) -> String {
    excerpt(s, QUOTE_CHARS)
}

#[cfg(test)]
mod tests;
