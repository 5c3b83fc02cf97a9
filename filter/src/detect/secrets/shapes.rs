//! The data the secret detector matches: provider token shapes (prefix, body charset and
//! length), published example keys that are not leaks, and the key words after which an
//! assigned value is a secret.

/// A provider token shape: literal prefix, body charset, body length range, kind.
pub(super) struct Shape {
    pub(super) prefix: &'static str,
    pub(super) body: Charset,
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) kind: &'static str,
    /// Must the prefix start at a word boundary?
    pub(super) boundary: bool,
    /// Fixed ending of the body, if the format has one (Anthropic keys end in `AA`).
    pub(super) suffix: &'static str,
}

#[derive(Clone, Copy)]
pub(super) enum Charset {
    /// A–Z a–z 0–9
    Alnum,
    /// Alnum plus `_` and `-`
    Url,
    /// Upper-case letters and digits 2–7 (AWS key ids)
    UpperB32,
    /// Alnum plus `_ - . / + =`
    Wide,
}

impl Charset {
    pub(super) fn allows(self, c: u8) -> bool {
        match self {
            Charset::Alnum => c.is_ascii_alphanumeric(),
            Charset::Url => c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
            Charset::UpperB32 => c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c),
            Charset::Wide => {
                c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/' | b'+' | b'=')
            }
        }
    }
}

const fn shape(
    prefix: &'static str,
    body: Charset,
    min: usize,
    max: usize,
    kind: &'static str,
) -> Shape {
    Shape {
        prefix,
        body,
        min,
        max,
        kind,
        boundary: true,
        suffix: "",
    }
}

/// `shape` whose body must end with `suffix`.
const fn ending(mut s: Shape, suffix: &'static str) -> Shape {
    s.suffix = suffix;
    s
}

use Charset::*;

pub(super) const SHAPES: &[Shape] = &[
    ending(
        shape("sk-ant-api03-", Url, 95, 95, "ANTHROPIC_API_KEY"),
        "AA",
    ),
    ending(
        shape("sk-ant-admin01-", Url, 95, 95, "ANTHROPIC_API_KEY"),
        "AA",
    ),
    shape("sk-proj-", Url, 40, 200, "OPENAI_API_KEY"),
    shape("sk-svcacct-", Url, 40, 200, "OPENAI_API_KEY"),
    shape("sk-admin-", Url, 40, 200, "OPENAI_API_KEY"),
    shape("sk-", Alnum, 32, 64, "OPENAI_API_KEY"),
    shape("AKIA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("ASIA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("ABIA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("ACCA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("A3T", Alnum, 17, 17, "AWS_ACCESS_KEY_ID"),
    shape("ABSK", Wide, 100, 400, "AWS_BEDROCK_KEY"),
    shape("ghp_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("gho_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("ghu_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("ghs_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("ghr_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("github_pat_", Url, 82, 82, "GITHUB_TOKEN"),
    shape("glpat-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("gldt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glrt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glptt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glft-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glsoat-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glcbt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glimt-", Url, 25, 60, "GITLAB_TOKEN"),
    shape("glagent-", Url, 50, 80, "GITLAB_TOKEN"),
    shape("gloas-", Url, 64, 64, "GITLAB_TOKEN"),
    shape("GR1348941", Url, 20, 60, "GITLAB_TOKEN"),
    shape("xoxb-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxp-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxa-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxr-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxs-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxe.xox", Url, 20, 300, "SLACK_TOKEN"),
    shape("xoxe-", Url, 20, 300, "SLACK_TOKEN"),
    shape("xapp-", Url, 20, 200, "SLACK_TOKEN"),
    shape("hooks.slack.com/services/", Wide, 30, 120, "SLACK_WEBHOOK"),
    shape("hooks.slack.com/workflows/", Wide, 30, 120, "SLACK_WEBHOOK"),
    shape("sk_live_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("sk_test_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("sk_prod_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("rk_live_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("rk_test_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("rk_prod_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("whsec_", Alnum, 24, 100, "STRIPE_KEY"),
    shape("AIza", Url, 35, 35, "GOOGLE_API_KEY"),
    shape("ya29.", Url, 30, 400, "GOOGLE_OAUTH_TOKEN"),
    shape("GOCSPX-", Url, 28, 28, "GOOGLE_CLIENT_SECRET"),
    shape("hf_", Alnum, 34, 34, "HUGGINGFACE_TOKEN"),
    shape("api_org_", Alnum, 34, 34, "HUGGINGFACE_TOKEN"),
    shape("npm_", Alnum, 36, 36, "NPM_TOKEN"),
    shape("pypi-AgEIcHlwaS5vcmc", Url, 50, 300, "PYPI_TOKEN"),
    shape("dop_v1_", Alnum, 64, 64, "DIGITALOCEAN_TOKEN"),
    shape("doo_v1_", Alnum, 64, 64, "DIGITALOCEAN_TOKEN"),
    shape("dor_v1_", Alnum, 64, 64, "DIGITALOCEAN_TOKEN"),
    shape("SG.", Wide, 60, 70, "SENDGRID_KEY"),
    shape("shpat_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("shpca_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("shppa_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("shpss_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("sntryu_", Alnum, 64, 64, "SENTRY_TOKEN"),
    shape("sntrys_", Wide, 60, 300, "SENTRY_TOKEN"),
    shape("pscale_tkn_", Wide, 32, 64, "PLANETSCALE_TOKEN"),
    shape("pscale_pw_", Wide, 32, 64, "PLANETSCALE_TOKEN"),
    shape("pscale_oauth_", Wide, 32, 64, "PLANETSCALE_TOKEN"),
    shape("AGE-SECRET-KEY-1", Alnum, 58, 58, "AGE_SECRET_KEY"),
    shape("dt0c01.", Wide, 80, 100, "DYNATRACE_TOKEN"),
    shape("sha256~", Url, 43, 43, "OPENSHIFT_TOKEN"),
    shape("lin_api_", Alnum, 40, 40, "LINEAR_API_KEY"),
    shape("figd_", Url, 40, 60, "FIGMA_TOKEN"),
    shape("FlyV1 ", Wide, 40, 900, "FLYIO_TOKEN"),
    shape("fm1r_", Wide, 40, 900, "FLYIO_TOKEN"),
    shape("fm2_", Wide, 40, 900, "FLYIO_TOKEN"),
    shape("fo1_", Url, 43, 43, "FLYIO_TOKEN"),
    shape("hvs.", Url, 90, 120, "VAULT_TOKEN"),
    shape("hvb.", Url, 130, 300, "VAULT_TOKEN"),
    shape("sq0atp-", Url, 22, 22, "SQUARE_TOKEN"),
    shape("sq0csp-", Url, 43, 43, "SQUARE_TOKEN"),
    shape("EAAA", Url, 60, 60, "SQUARE_TOKEN"),
    shape("EAACEdEose0cBA", Alnum, 20, 400, "FACEBOOK_TOKEN"),
    shape("ATATT3", Wide, 186, 200, "ATLASSIAN_TOKEN"),
    shape("dapi", Alnum, 32, 40, "DATABRICKS_TOKEN"),
    shape("glc_", Wide, 32, 400, "GRAFANA_TOKEN"),
    shape("glsa_", Url, 32, 60, "GRAFANA_TOKEN"),
    shape("PMAK-", Url, 59, 59, "POSTMAN_KEY"),
    shape("rubygems_", Alnum, 48, 48, "RUBYGEMS_KEY"),
    shape("pul-", Alnum, 40, 40, "PULUMI_TOKEN"),
    shape("sgp_", Alnum, 40, 80, "SOURCEGRAPH_TOKEN"),
    shape("tfp_", Wide, 59, 59, "TYPEFORM_TOKEN"),
    shape("xai-", Alnum, 80, 80, "XAI_API_KEY"),
    shape("gsk_", Alnum, 52, 52, "GROQ_API_KEY"),
    shape("r8_", Alnum, 37, 40, "REPLICATE_TOKEN"),
    shape("ops_eyJ", Wide, 250, 2000, "ONEPASSWORD_TOKEN"),
    shape("ico-", Url, 32, 32, "INFRACOST_TOKEN"),
    shape("CLOJARS_", Alnum, 60, 60, "CLOJARS_TOKEN"),
    shape("EZAK", Alnum, 54, 54, "EASYPOST_KEY"),
    shape("EZTK", Alnum, 54, 54, "EASYPOST_KEY"),
    shape("shippo_live_", Alnum, 40, 40, "SHIPPO_TOKEN"),
    shape("shippo_test_", Alnum, 40, 40, "SHIPPO_TOKEN"),
    shape("duffel_test_", Url, 43, 43, "DUFFEL_TOKEN"),
    shape("duffel_live_", Url, 43, 43, "DUFFEL_TOKEN"),
    shape("dp.pt.", Alnum, 43, 43, "DOPPLER_TOKEN"),
    shape("pk.eyJ", Wide, 30, 300, "MAPBOX_TOKEN"),
    shape("sk.eyJ", Wide, 30, 300, "MAPBOX_TOKEN"),
    shape("nrak-", Alnum, 27, 27, "NEWRELIC_KEY"),
    shape("NRAK-", Alnum, 27, 27, "NEWRELIC_KEY"),
    shape("NRJS-", Alnum, 19, 19, "NEWRELIC_KEY"),
    shape("oy2", Alnum, 43, 43, "NUGET_KEY"),
    shape("prefect_", Alnum, 36, 36, "PREFECT_TOKEN"),
    shape("scalingo_", Alnum, 40, 40, "SCALINGO_TOKEN"),
    shape("tk_", Alnum, 40, 40, "SCALINGO_TOKEN"),
    shape("ctfp_", Alnum, 30, 60, "CONTENTFUL_TOKEN"),
    shape("ntn_", Alnum, 46, 46, "NOTION_TOKEN"),
    shape("secret_", Alnum, 43, 43, "NOTION_TOKEN"),
    shape("HRKU-", Url, 60, 60, "HEROKU_KEY"),
    shape("s-s4t2ud-", Alnum, 64, 64, "INTRA42_SECRET"),
    shape("s-s4t2af-", Alnum, 64, 64, "INTRA42_SECRET"),
    shape("p8e-", Alnum, 32, 32, "ADOBE_SECRET"),
    shape("EAAM", Alnum, 100, 400, "FACEBOOK_TOKEN"),
    shape("EAAC", Alnum, 100, 400, "FACEBOOK_TOKEN"),
    shape("sqp_", Alnum, 40, 40, "SONARQUBE_TOKEN"),
    shape("squ_", Alnum, 40, 40, "SONARQUBE_TOKEN"),
    shape("sqa_", Alnum, 40, 40, "SONARQUBE_TOKEN"),
];

/// Google API keys published as examples in the Firebase Android SDK's sources and tests, copied
/// into countless sample apps: public by design, so not a leak. Secret scanners built on
/// gitleaks' rules allow-list the same keys.
pub(super) const PUBLIC_EXAMPLE_KEYS: &[&str] = &[
    "AIzaSyabcdefghijklmnopqrstuvwxyz1234567",
    "AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs",
    "AIzaSyCkEhVjf3pduRDt6d1yKOMitrUEke8agEM",
    "AIzaSyDMAScliyLx7F0NPDEJi1QmyCgHIAODrlU",
    "AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0",
    "AIzayDNSXIbFmlXbIE6mCzDLQAqITYefhixbX4A",
    "AIzaSyAdOS2zB6NCsk1pCdZ4-P6GBdi_UUPwX7c",
    "AIzaSyASWm6HmTMdYWpgMnjRBjxcQ9CKctWmLd4",
    "AIzaSyANUvH9H9BsUccjsu2pCmEkOPjjaXeDQgY",
    "AIzaSyA5_iVawFQ8ABuTZNUdcwERLJv_a_p4wtM",
    "AIzaSyA4UrcGxgwQFTfaI3no3t7Lt1sjmdnP5sQ",
    "AIzaSyDSb51JiIcB6OJpwwMicseKRhhrOq1cS7g",
    "AIzaSyBF2RrAIm4a0mO64EShQfqfd2AFnzAvvuU",
    "AIzaSyBcE-OOIbhjyR83gm4r2MFCu4MJmprNXsw",
    "AIzaSyB8qGxt4ec15vitgn44duC5ucxaOi4FmqE",
    "AIzaSyA8vmApnrHNFE0bApF4hoZ11srVL_n0nvY",
];

/// Key words after which an assigned high-entropy value is a secret.
pub(super) const KEYWORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "auth",
    "credential",
    "credentials",
    "bearer",
    "access",
    "private",
    "client_id",
    "clientid",
    "client-id",
    "access_id",
    "accessid",
    "signature",
    "salt",
    "pass",
    "session",
    "cookie",
    "license",
    "licence",
    "webhook",
    "dsn",
    "x-api-key",
    "id",
    "login",
];
