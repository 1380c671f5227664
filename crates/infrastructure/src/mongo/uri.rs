//! Connection strings in messages: [`mask_uri`] hides credentials before a URI reaches an
//! error or a log line, and [`scrub`] removes the password from driver messages that might
//! echo it.

/// Query parameters whose values are secrets (compared case-insensitively, by substring).
const SECRET_PARAMS: &[&str] = &["password", "secret", "token", "authmechanismproperties"];

/// The URI with the password (and secret query parameters) replaced by `***`; the scheme,
/// user name, hosts, database and other options stay readable for diagnosis.
///
/// ```
/// use butler_infrastructure::mongo::mask_uri;
/// assert_eq!(
///     mask_uri("mongodb://butler:s3cr%40t@db1:27017,db2/butler?replicaSet=rs0"),
///     "mongodb://butler:***@db1:27017,db2/butler?replicaSet=rs0"
/// );
/// ```
#[must_use]
pub fn mask_uri(uri: &str) -> String {
    let (scheme, rest) = match uri.find("://") {
        Some(i) => uri.split_at(i + 3),
        None => ("", uri),
    };
    // The user info ends at the last '@' before the query: a password that (wrongly) holds an
    // unescaped '/' or '@' is still masked whole.
    let query_start = rest.find('?').unwrap_or(rest.len());
    let (userinfo, after) = match rest[..query_start].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = String::with_capacity(uri.len());
    out.push_str(scheme);
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(userinfo),
        }
        out.push('@');
    }
    match after.split_once('?') {
        Some((hosts, query)) => {
            out.push_str(hosts);
            out.push('?');
            out.push_str(&mask_query(query));
        }
        None => out.push_str(after),
    }
    out
}

fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _))
                if SECRET_PARAMS
                    .iter()
                    .any(|s| key.to_ascii_lowercase().contains(s)) =>
            {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The password of `uri`, if it has one (as written, percent-encoded or not).
fn password(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let query_start = rest.find('?').unwrap_or(rest.len());
    let at = rest[..query_start].rfind('@')?;
    let (_, password) = rest[..at].split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `message` with every occurrence of `uri`'s password replaced by `***`, in case a driver
/// message quotes part of the connection string.
#[must_use]
pub fn scrub(message: &str, uri: &str) -> String {
    match password(uri) {
        Some(p) => message.replace(p, "***"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_everything_else_stays_readable() {
        assert_eq!(
            mask_uri("mongodb://admin:hunter2@localhost:27017/butler?authSource=admin"),
            "mongodb://admin:***@localhost:27017/butler?authSource=admin"
        );
        assert_eq!(
            mask_uri("mongodb+srv://u:p@cluster0.example.net/"),
            "mongodb+srv://u:***@cluster0.example.net/"
        );
    }

    #[test]
    fn uris_without_credentials_are_unchanged() {
        for uri in [
            "mongodb://127.0.0.1:27017",
            "mongodb://db1,db2,db3/butler?replicaSet=rs0&w=majority",
            "not a uri at all",
        ] {
            assert_eq!(mask_uri(uri), uri);
        }
    }

    #[test]
    fn a_user_name_without_a_password_is_kept() {
        assert_eq!(
            mask_uri("mongodb://x509user@db/?authMechanism=MONGODB-X509"),
            "mongodb://x509user@db/?authMechanism=MONGODB-X509"
        );
    }

    #[test]
    fn passwords_with_unescaped_separators_are_masked_whole() {
        let masked = mask_uri("mongodb://u:pa/ss@w@rd@host:1/db");
        assert_eq!(masked, "mongodb://u:***@host:1/db");
        assert!(!masked.contains("rd"));
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        let masked = mask_uri(
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:abc&tls=true",
        );
        assert_eq!(
            masked,
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***&tls=true"
        );
    }

    #[test]
    fn scrub_removes_the_password_from_driver_messages() {
        let uri = "mongodb://u:topsecret@h/";
        assert_eq!(
            scrub("failed near 'topsecret@h'", uri),
            "failed near '***@h'"
        );
        assert_eq!(scrub("no secret here", "mongodb://h/"), "no secret here");
    }
}
