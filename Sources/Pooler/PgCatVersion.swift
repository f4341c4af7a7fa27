/// The pooler's version, reported by `--version`, `SHOW VERSION` and the admin console's `server_version`.
public enum PgCatVersion {
    public static let string = "0.1.0"
}
