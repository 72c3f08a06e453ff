//! `herald debug --show-config`: the effective configuration, key by key, with where each value
//! came from (default, file, environment variable, command line) and secrets redacted.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, EnvSource, Loaded, Overrides, DEV_APP, DEV_JWT_SECRET};

/// One configuration key as shown to an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `server.port`, `apps[0].key`, ...
    pub key: String,
    /// The value as TOML, secrets replaced by `"***"`.
    pub value: String,
    /// `default`, `file herald.toml`, `env HERALD_SERVER__PORT`, `--port`, `development default`,
    /// `generated, ./herald-secrets.toml`.
    pub source: String,
}

/// Keys whose values are never printed.
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(last, "secret" | "jwt_secret" | "token" | "encryption_master_key_base64")
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, inner, out);
            }
        }
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) && !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{index}]"), item, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

fn file_keys(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    let mut out = Vec::new();
    flatten("", &toml::Value::Table(table), &mut out);
    out.into_iter().map(|(key, _)| key).collect()
}

/// Every key of the effective configuration with its source.
pub fn describe(loaded: &Loaded, env: &dyn EnvSource, overrides: &Overrides) -> Vec<Described> {
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    if let Some(file) = &loaded.file {
        for key in file_keys(file) {
            sources.insert(key, format!("file {}", file.display()));
        }
    }
    for (name, _) in env.vars_with_prefix("HERALD_") {
        if let Some(path) = name.strip_prefix("HERALD_").filter(|path| path.contains("__")) {
            sources.insert(
                path.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join("."),
                format!("env {name}"),
            );
        }
    }
    for (variable, key) in [
        ("DATABASE_URL", "database.url"),
        ("REDIS_URL", "cluster.redis_url"),
        ("BROADCAST_CONNECTION", "notifications.driver"),
        ("PUSHER_HOST", "notifications.upstream.host"),
        ("PUSHER_PORT", "notifications.upstream.port"),
        ("PUSHER_SCHEME", "notifications.upstream.scheme"),
        ("PUSHER_APP_CLUSTER", "notifications.upstream.cluster"),
        ("HERALD_ADMIN_TOKEN", "admin.token"),
        ("HERALD_JWT_SECRET", "auth.jwt_secret"),
    ] {
        if env.var(variable).is_some() {
            sources.insert(key.into(), format!("env {variable}"));
        }
    }
    if let Some(id) = env.var("PUSHER_APP_ID") {
        if let Some(index) = loaded.config.apps.iter().position(|app| app.id == id) {
            for (field, variable) in
                [("id", "PUSHER_APP_ID"), ("key", "PUSHER_APP_KEY"), ("secret", "PUSHER_APP_SECRET")]
            {
                sources.insert(format!("apps[{index}].{field}"), format!("env {variable}"));
            }
        }
    }
    if overrides.host.is_some() {
        sources.insert("server.host".into(), "--host".into());
    }
    if overrides.port.is_some() {
        sources.insert("server.port".into(), "--port".into());
    }
    if overrides.database_url.is_some() {
        sources.insert("database.url".into(), "--database-url".into());
    }
    if overrides.redis_url.is_some() {
        sources.insert("cluster.redis_url".into(), "--redis-url".into());
    }
    if loaded.config.auth.jwt_secret == DEV_JWT_SECRET {
        sources.insert("auth.jwt_secret".into(), "development default".into());
    }
    let generated = loaded.credentials_file.as_ref().map(|path| format!("generated, {}", path.display()));
    if let Some(generated) = &generated {
        if !sources.contains_key("auth.jwt_secret") && !loaded.config.auth.jwt_secret.is_empty() {
            sources.insert("auth.jwt_secret".into(), generated.clone());
        }
    }
    let made_up_app = loaded.config.apps.len() == 1 && !sources.keys().any(|key| key.starts_with("apps["));
    let development_app = made_up_app && loaded.config.apps[0].id == DEV_APP.0;
    let generated_app = if made_up_app && !development_app { generated } else { None };
    let value = toml::Value::try_from(&loaded.config).expect("the configuration serializes");
    let mut flat = Vec::new();
    flatten("", &value, &mut flat);
    flat.into_iter()
        .map(|(key, value)| {
            // A receiver's extra headers are usually its credentials.
            let header = key.contains(".webhooks[") && key.contains("].headers.");
            let shown = if (is_secret(&key) || header) && value.as_str().is_some_and(|text| !text.is_empty())
            {
                "\"***\"".to_owned()
            } else if key == "database.url" || key == "cluster.redis_url" {
                let urls = value.as_str().unwrap_or_default().split(',').map(crate::redact_url);
                format!("{:?}", urls.collect::<Vec<_>>().join(","))
            } else {
                value.to_string()
            };
            let source = sources.get(&key).cloned().unwrap_or_else(|| {
                if development_app && key.starts_with("apps[0].") {
                    "development default".to_owned()
                } else if let Some(generated) = generated_app.as_ref().filter(|_| key.starts_with("apps[0]."))
                {
                    generated.clone()
                } else {
                    "default".to_owned()
                }
            });
            Described { key, value: shown, source }
        })
        .collect()
}

impl Config {
    /// Whether `key` names a secret (never printed).
    pub fn is_secret_key(key: &str) -> bool {
        is_secret(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_redaction() {
        let dir = tempfile_free_dir();
        let file = dir.join("herald.toml");
        let toml = "[server]\nport = 7000\n[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\n\
                    [[apps.webhooks]]\nurl = \"https://hooks.example/p\"\nevent_types = [\"channel_vacated\"]\n\
                    headers = { Authorization = \"Bearer hook-token\" }\n";
        std::fs::write(&file, toml).expect("written");
        let env: BTreeMap<String, String> = [
            ("HERALD_SERVER__ACTIVITY_TIMEOUT_SECS".to_owned(), "60".to_owned()),
            ("HERALD_JWT_SECRET".to_owned(), "jwt".to_owned()),
        ]
        .into_iter()
        .collect();
        let overrides = Overrides {
            config_file: Some(file.clone()),
            host: Some("127.0.0.1".into()),
            ..Overrides::default()
        };
        let loaded = Config::load(&env, &overrides).expect("loads");
        let described = describe(&loaded, &env, &overrides);
        let find = |key: &str| described.iter().find(|d| d.key == key).cloned().expect(key);
        assert_eq!(find("server.port").source, format!("file {}", file.display()));
        assert_eq!(find("server.activity_timeout_secs").source, "env HERALD_SERVER__ACTIVITY_TIMEOUT_SECS");
        assert_eq!(find("server.host").source, "--host");
        assert_eq!(find("server.pong_timeout_secs").source, "default");
        assert_eq!(find("apps[0].secret").value, "\"***\"");
        assert_eq!(find("apps[0].webhooks[0].url").value, "\"https://hooks.example/p\"");
        assert_eq!(find("apps[0].webhooks[0].event_types").value, "[\"channel_vacated\"]");
        assert_eq!(
            find("apps[0].webhooks[0].headers.Authorization").value,
            "\"***\"",
            "a receiver's credential"
        );
        assert_eq!(find("auth.jwt_secret").value, "\"***\"");
        assert_eq!(find("auth.jwt_secret").source, "env HERALD_JWT_SECRET");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_free_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("herald-describe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
