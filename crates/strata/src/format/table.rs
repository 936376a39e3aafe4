//! docker's list output (`images`, `ps`, `volume ls`, `history`, ...) and
//! `inspect` output.
//!
//! List formats, as docker's `formatter.Context` treats `--format`:
//! - no format, `""` or `"table"`: the command's default table format;
//! - `"json"` (exactly): each row as one line of `{{json .}}`;
//! - `"table <tmpl>"` (any format starting with `table`): a header row (the
//!   template executed on the header map with docker's header functions),
//!   then one line per row, all aligned by a tabwriter with docker's settings
//!   (minwidth 10, padding 3, spaces);
//! - anything else: one line per row, no header.
//!
//! The template part is trimmed of spaces and the two-character sequences
//! `\t` and `\n` become a tab and a newline.
//!
//! Rows are JSON objects, one per listed item, with the fields the command
//! offers (`{"ID": "…", "Repository": "…", …}`), normally all strings as
//! docker's formatter contexts return them. Rows behave like those contexts:
//! - `{{json .}}` of a row prints its keys sorted, with `<`, `>`, `&`
//!   escaped (docker marshals the context through a Go map with
//!   `json.Marshal`); `{{json .Field}}` does not escape;
//! - a field the row does not have is an error (`can't evaluate field X`),
//!   while the header row prints `<no value>` for it;
//! - a top-level key starting with `.` defines a method instead of a field:
//!   `".Label": {"k": "v"}` makes `{{.Label "k"}}` print `v` (and `""` for an
//!   absent key), as docker's `Label` methods do; such keys are not fields and
//!   `json` omits them.
//!
//! Template execution errors abort the whole listing (docker prints nothing
//! then); errors while rendering the header only cut the header short.

use serde_json::Value;

use super::gofmt::json_encode;
use super::tabwriter::tabwrite;
use super::template::Template;
use super::FormatError;

/// What a list command contributes to its output format.
#[derive(Debug, Clone, Copy)]
pub struct ListFormat<'a> {
    /// The default format, including the `table` prefix, e.g.
    /// `"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"`.
    pub default_table: &'a str,
    /// Header text of each field, e.g. `("ID", "IMAGE ID")`. Fields without a
    /// header print `<no value>` in the header row, as in docker.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Renders `rows` for a list command. `format` is the user's `--format`
/// (`None` = default table). Quiet output (`-q`) is left to callers.
pub fn render_list(
    format: Option<&str>,
    spec: &ListFormat<'_>,
    rows: &[Value],
) -> Result<String, FormatError> {
    let format = match format {
        None | Some("") | Some("table") => spec.default_table,
        Some(f) => f,
    };
    let is_table = format.starts_with("table");
    let tmpl_src = if is_table {
        &format["table".len()..]
    } else if format == "json" {
        "{{json .}}"
    } else {
        format
    };
    let tmpl_src = tmpl_src
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    let tmpl = Template::parse(&tmpl_src)?;
    let mut body = String::new();
    for row in rows {
        body.push_str(&tmpl.execute_row(row)?);
        body.push('\n');
    }
    if !is_table {
        return Ok(body);
    }
    let header: serde_json::Map<String, Value> = spec
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    let mut text = tmpl.execute_header(&Value::Object(header));
    text.push('\n');
    text.push_str(&body);
    Ok(tabwrite(&text, 10, 3, ' '))
}

/// Output of `inspect` for several objects: what goes to stdout, and the
/// errors of the objects the template failed on (docker prints the others,
/// then the errors, and exits 1).
#[derive(Debug, Clone, PartialEq)]
pub struct InspectOutput {
    pub stdout: String,
    pub errors: Vec<FormatError>,
}

/// `inspect` output. Without a format (or `""`): the objects as a JSON array
/// indented with 4 spaces, `<`, `>`, `&` escaped as Go does; `"json"`: the
/// same array compact on one line; otherwise each object rendered through the
/// template followed by a newline (a lone newline when nothing was rendered).
/// An unparsable template is the outer error.
pub fn render_inspect_all(
    format: Option<&str>,
    objects: &[Value],
) -> Result<InspectOutput, FormatError> {
    let mut stdout = String::new();
    let mut errors = Vec::new();
    match format {
        None | Some("") | Some("json") => {
            if objects.is_empty() {
                stdout.push_str("[]\n");
            } else {
                let indent = if format == Some("json") {
                    None
                } else {
                    Some("    ")
                };
                json_encode(
                    &mut stdout,
                    &Value::Array(objects.to_vec()),
                    true,
                    indent,
                    0,
                )
                .map_err(|_| FormatError::Execute("json: unsupported value".into()))?;
                stdout.push('\n');
            }
        }
        Some(src) => {
            let tmpl = Template::parse(src)?;
            for obj in objects {
                match tmpl.execute(obj) {
                    Ok(s) => {
                        stdout.push_str(&s);
                        stdout.push('\n');
                    }
                    Err(e) => errors.push(e),
                }
            }
            if stdout.is_empty() {
                stdout.push('\n');
            }
        }
    }
    Ok(InspectOutput { stdout, errors })
}

/// Like [`render_inspect_all`], failing on the first object the template
/// failed on.
pub fn render_inspect(format: Option<&str>, objects: &[Value]) -> Result<String, FormatError> {
    let out = render_inspect_all(format, objects)?;
    match out.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(out.stdout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IMAGES: ListFormat<'static> = ListFormat {
        default_table: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        headers: &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("Containers", "CONTAINERS"),
        ],
    };

    fn rows() -> Vec<Value> {
        vec![
            json!({"Repository": "alpine", "Tag": "latest", "ID": "aded1e1a5b37", "CreatedSince": "2 weeks ago", "Size": "7.8MB", "Containers": "N/A", ".Label": {"org": "x"}}),
            json!({"Repository": "registry.example.com/team/app", "Tag": "v1.2.3", "ID": "0123456789ab", "CreatedSince": "3 months ago", "Size": "1.23GB", "Containers": "N/A"}),
        ]
    }

    #[test]
    fn default_table_like_docker_images() {
        let out = render_list(None, &IMAGES, &rows()).unwrap();
        assert_eq!(
            out,
            "REPOSITORY                      TAG       IMAGE ID       CREATED        SIZE\n\
             alpine                          latest    aded1e1a5b37   2 weeks ago    7.8MB\n\
             registry.example.com/team/app   v1.2.3    0123456789ab   3 months ago   1.23GB\n"
        );
        assert_eq!(render_list(Some("table"), &IMAGES, &rows()).unwrap(), out);
        assert_eq!(render_list(Some(""), &IMAGES, &rows()).unwrap(), out);
    }

    #[test]
    fn empty_list_prints_header_only() {
        assert_eq!(
            render_list(None, &IMAGES, &[]).unwrap(),
            "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n"
        );
    }

    #[test]
    fn custom_table_with_escapes_and_functions() {
        let out = render_list(
            Some(r"table {{.ID}}\t{{.Repository | upper}}:{{.Tag}}"),
            &IMAGES,
            &rows(),
        )
        .unwrap();
        assert_eq!(
            out,
            "IMAGE ID       REPOSITORY:TAG\n\
             aded1e1a5b37   ALPINE:latest\n\
             0123456789ab   REGISTRY.EXAMPLE.COM/TEAM/APP:v1.2.3\n"
        );
        // Header functions pass the header through; pad still pads.
        let out = render_list(
            Some("table {{json .ID}}|{{pad .Tag 1 1}}|{{truncate .Repository 3}}"),
            &IMAGES,
            &rows()[..1],
        )
        .unwrap();
        assert_eq!(
            out,
            "IMAGE ID| TAG |REPOSITORY\n\"aded1e1a5b37\"| latest |alp\n"
        );
        // An unknown field: `<no value>` in the header, an error in rows.
        assert_eq!(
            render_list(Some("table {{.Nope}}"), &IMAGES, &[]).unwrap(),
            "<no value>\n"
        );
        assert_eq!(
            render_list(Some("table {{.Nope}}"), &IMAGES, &rows()).unwrap_err(),
            FormatError::Execute("can't evaluate field Nope".into())
        );
        // A header execution error cuts the header where it happened.
        let out = render_list(Some("table {{.ID}}\t{{json .}}"), &IMAGES, &rows()[..1]).unwrap();
        assert_eq!(
            out,
            "IMAGE ID       \naded1e1a5b37   {\"Containers\":\"N/A\",\"CreatedSince\":\"2 weeks ago\",\"ID\":\"aded1e1a5b37\",\"Repository\":\"alpine\",\"Size\":\"7.8MB\",\"Tag\":\"latest\"}\n"
        );
    }

    #[test]
    fn plain_format_and_json() {
        assert_eq!(
            render_list(Some("{{.Repository}}:{{.Tag}}"), &IMAGES, &rows()).unwrap(),
            "alpine:latest\nregistry.example.com/team/app:v1.2.3\n"
        );
        assert_eq!(
            render_list(Some("  {{.ID}}\\n"), &IMAGES, &rows()[..1]).unwrap(),
            "aded1e1a5b37\n\n"
        );
        assert_eq!(
            render_list(Some("json"), &IMAGES, &rows()[..1]).unwrap(),
            "{\"Containers\":\"N/A\",\"CreatedSince\":\"2 weeks ago\",\"ID\":\"aded1e1a5b37\",\"Repository\":\"alpine\",\"Size\":\"7.8MB\",\"Tag\":\"latest\"}\n"
        );
        let mut labelled = rows();
        labelled[1][".Label"] = json!({});
        assert_eq!(
            render_list(Some("{{.Label \"org\"}}"), &IMAGES, &labelled).unwrap(),
            "x\n\n"
        );
        // A row without the method fails like a Go map given arguments.
        assert_eq!(
            render_list(Some("{{.Label \"org\"}}"), &IMAGES, &rows()).unwrap_err(),
            FormatError::Execute("Label is not a method but has arguments".into())
        );
        assert_eq!(render_list(Some("json"), &IMAGES, &[]).unwrap(), "");
    }

    #[test]
    fn list_errors() {
        assert_eq!(
            render_list(Some("{{.ID | nope}}"), &IMAGES, &rows())
                .unwrap_err()
                .to_string(),
            r#"template parsing error: template: :1: function "nope" not defined"#
        );
        assert!(render_list(Some("{{upper .Missing}}"), &IMAGES, &rows()).is_err());
    }

    #[test]
    fn inspect_default_is_indented_json_array() {
        let objs = vec![
            json!({"Id": "x", "Name": "/a<b>&", "Config": {"Env": [], "Labels": {}}, "Size": 12, "Ratio": 0.5}),
        ];
        assert_eq!(
            render_inspect(None, &objs).unwrap(),
            "[\n    {\n        \"Id\": \"x\",\n        \"Name\": \"/a\\u003cb\\u003e\\u0026\",\n        \"Config\": {\n            \"Env\": [],\n            \"Labels\": {}\n        },\n        \"Size\": 12,\n        \"Ratio\": 0.5\n    }\n]\n"
        );
        assert_eq!(render_inspect(None, &[]).unwrap(), "[]\n");
        assert_eq!(render_inspect(Some(""), &[]).unwrap(), "[]\n");
        assert_eq!(
            render_inspect(Some("json"), &objs).unwrap(),
            "[{\"Id\":\"x\",\"Name\":\"/a\\u003cb\\u003e\\u0026\",\"Config\":{\"Env\":[],\"Labels\":{}},\"Size\":12,\"Ratio\":0.5}]\n"
        );
    }

    #[test]
    fn inspect_with_template() {
        let objs = vec![
            json!({"Name": "/a", "State": {"Running": true, "Pid": 42}, "Config": {"Labels": {"b": "1", "a": "2"}}}),
            json!({"Name": "/b", "State": {"Running": false, "Pid": 0}, "Config": {"Labels": null}}),
        ];
        assert_eq!(
            render_inspect(Some("{{.Name}} {{.State.Pid}}"), &objs).unwrap(),
            "/a 42\n/b 0\n"
        );
        assert_eq!(
            render_inspect(Some("{{json .Config.Labels}}"), &objs).unwrap(),
            "{\"b\":\"1\",\"a\":\"2\"}\nnull\n"
        );
        assert_eq!(render_inspect(Some("{{.Name}}"), &[]).unwrap(), "\n");
        assert!(matches!(
            render_inspect(Some("{{.Name"), &objs),
            Err(FormatError::Parse(_))
        ));
        let out = render_inspect_all(Some("{{upper .Config.Labels.a}}"), &objs).unwrap();
        assert_eq!(out.stdout, "2\n");
        assert_eq!(
            out.errors,
            vec![FormatError::Execute(
                "invalid value; expected string".into()
            )]
        );
    }
}
