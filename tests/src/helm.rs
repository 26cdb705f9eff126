//! A minimal Helm renderer for the deployment tests: Go templates (gtmpl) with the handful of
//! Sprig functions the chart uses, and the `.Values` / `.Release` / `.Chart` context Helm builds.
//!
//! No `helm` binary can be installed on these machines (no Go toolchain, no GitHub downloads), so
//! the chart is deliberately restricted to what this renderer implements: `toYaml`, `indent`,
//! `nindent`, `quote`, `default`, and the template language's own `if` / `range`. A template
//! using anything else fails to render here, which keeps the two in step.

use std::{collections::HashMap, path::Path};

use gtmpl::{Context, Template};
use gtmpl_value::{FuncError, Number, Value};

/// Renders every `templates/*.yaml` of the chart at `chart_dir` as `helm template NAME chart
/// --namespace NAMESPACE` would, returning (template file name, rendered text) in name order.
pub fn render_chart(
    chart_dir: &Path,
    release: &str,
    namespace: &str,
) -> Result<Vec<(String, String)>, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let chart: serde_yaml::Value = serde_yaml::from_str(&read(&chart_dir.join("Chart.yaml"))?)
        .map_err(|e| format!("Chart.yaml: {e}"))?;
    let values: serde_yaml::Value = serde_yaml::from_str(&read(&chart_dir.join("values.yaml"))?)
        .map_err(|e| format!("values.yaml: {e}"))?;

    let field = |k: &str| Value::from(chart[k].as_str().unwrap_or_default().to_string());
    let context = Value::Map(HashMap::from([
        ("Values".to_string(), from_yaml(&values)),
        (
            "Release".to_string(),
            Value::Map(HashMap::from([
                ("Name".to_string(), Value::from(release)),
                ("Namespace".to_string(), Value::from(namespace)),
                ("Service".to_string(), Value::from("Helm")),
            ])),
        ),
        (
            "Chart".to_string(),
            Value::Map(HashMap::from([
                ("Name".to_string(), field("name")),
                ("Version".to_string(), field("version")),
                ("AppVersion".to_string(), field("appVersion")),
            ])),
        ),
    ]));

    let mut files: Vec<_> = std::fs::read_dir(chart_dir.join("templates"))
        .map_err(|e| format!("templates/: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Helm renders partials (`_*.tpl`) and NOTES.txt separately; neither is an object.
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();

    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut tmpl = Template::with_name(name.clone());
        tmpl.add_funcs(&[
            ("toYaml", to_yaml as gtmpl_value::Func),
            ("indent", indent),
            ("nindent", nindent),
            ("quote", quote),
            ("default", default),
        ]);
        tmpl.parse(read(&path)?)
            .map_err(|e| format!("{name}: parse: {e}"))?;
        let text = tmpl
            .render(&Context::from(context.clone()))
            .map_err(|e| format!("{name}: render: {e}"))?;
        out.push((name, text));
    }
    Ok(out)
}

/// Values as the template engine sees them.
pub fn from_yaml(v: &serde_yaml::Value) -> Value {
    match v {
        serde_yaml::Value::Null => Value::Nil,
        serde_yaml::Value::Bool(b) => Value::Bool(*b),
        serde_yaml::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Number(Number::from(i)),
            (None, Some(f)) => Value::Number(Number::from(f)),
            (None, None) => Value::Nil,
        },
        serde_yaml::Value::String(s) => Value::String(s.clone()),
        serde_yaml::Value::Sequence(items) => Value::Array(items.iter().map(from_yaml).collect()),
        serde_yaml::Value::Mapping(m) => Value::Map(
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), from_yaml(v))))
                .collect(),
        ),
        serde_yaml::Value::Tagged(t) => from_yaml(&t.value),
    }
}

fn to_yaml_value(v: &Value) -> serde_yaml::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_yaml::Value::Null,
        Value::Bool(b) => serde_yaml::Value::Bool(*b),
        Value::String(s) => serde_yaml::Value::String(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => serde_yaml::Value::from(i),
            (None, Some(f)) => serde_yaml::Value::from(f),
            (None, None) => serde_yaml::Value::Null,
        },
        Value::Array(items) => {
            serde_yaml::Value::Sequence(items.iter().map(to_yaml_value).collect())
        }
        Value::Map(m) | Value::Object(m) => {
            // Sorted keys, as Helm's toYaml emits them.
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            serde_yaml::Value::Mapping(
                keys.into_iter()
                    .map(|k| (serde_yaml::Value::from(k.as_str()), to_yaml_value(&m[k])))
                    .collect(),
            )
        }
    }
}

fn arg<'a>(name: &str, args: &'a [Value], n: usize) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.to_string(), n));
    }
    Ok(&args[n - 1])
}

fn width(v: &Value) -> Result<usize, FuncError> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

/// `toYaml VALUE`: YAML without the trailing newline (Helm trims it).
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg("toYaml", args, 1)?;
    let text = serde_yaml::to_string(&to_yaml_value(v))
        .map_err(|e| FuncError::Generic(format!("toYaml: {e}")))?;
    Ok(Value::from(text.trim_end_matches('\n').to_string()))
}

/// `indent N TEXT`: every line prefixed by N spaces.
fn indent(args: &[Value]) -> Result<Value, FuncError> {
    let text = arg("indent", args, 2)?.to_string();
    let pad = " ".repeat(width(&args[0])?);
    Ok(Value::from(format!(
        "{pad}{}",
        text.replace('\n', &format!("\n{pad}"))
    )))
}

/// `nindent N TEXT`: a newline, then `indent N TEXT`.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let Value::String(s) = indent(args)? else {
        return Err(FuncError::UnableToConvertFromValue);
    };
    Ok(Value::from(format!("\n{s}")))
}

/// `quote VALUE...`: each value as a double-quoted string, space separated.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| format!("{:?}", v.to_string()))
        .collect();
    Ok(Value::from(quoted.join(" ")))
}

/// `default DEFAULT VALUE`: VALUE unless it is empty (nil, "", 0, false, empty list or map).
fn default(args: &[Value]) -> Result<Value, FuncError> {
    let given = arg("default", args, 2)?;
    let empty = match given {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Function(_) => false,
    };
    Ok(if empty {
        args[0].clone()
    } else {
        given.clone()
    })
}
