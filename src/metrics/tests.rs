use super::*;

#[test]
fn renders_help_type_and_samples() {
    let mut r = Registry::new();
    r.counter("antq_x_total", "Things.\nSecond line with \\ backslash.")
        .int(&[], 3);
    r.gauge("antq_up", "Up or not.")
        .int(&[("peer", "ab\"c\\d\ne")], 1)
        .sample(&[("peer", "z")], 0.25);
    r.gauge("antq_empty", "Has no samples.");
    // Registering a family again adds to it.
    r.counter("antq_x_total", "ignored").int(&[("k", "v")], 4);
    let text = r.render();
    assert_eq!(
        text,
        "# HELP antq_x_total Things.\\nSecond line with \\\\ backslash.\n\
         # TYPE antq_x_total counter\n\
         antq_x_total 3\n\
         antq_x_total{k=\"v\"} 4\n\
         # HELP antq_up Up or not.\n\
         # TYPE antq_up gauge\n\
         antq_up{peer=\"ab\\\"c\\\\d\\ne\"} 1\n\
         antq_up{peer=\"z\"} 0.25\n"
    );
}

#[test]
fn values_are_formatted_like_prometheus() {
    assert_eq!(format_value(0.0), "0");
    assert_eq!(format_value(42.0), "42");
    assert_eq!(format_value(-3.0), "-3");
    assert_eq!(format_value(0.005), "0.005");
    assert_eq!(format_value(f64::INFINITY), "+Inf");
    assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(format_value(1e20), "100000000000000000000");
}

#[test]
fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
    static BOUNDS: &[f64] = &[0.25, 1.0, 10.0];
    let h = Histogram::new(BOUNDS);
    for v in [0.125, 0.25, 0.5, 2.0, 20.0, 32.0] {
        h.observe(v);
    }
    let snap = h.snapshot();
    assert_eq!(snap.counts, vec![2, 1, 1]);
    assert_eq!(snap.count, 6);
    assert_eq!(snap.sum, 54.875);
    let mut r = Registry::new();
    r.histogram("antq_t_seconds", "Times.")
        .histogram(&[("path", "direct")], &snap);
    let text = r.render();
    let expected = "# HELP antq_t_seconds Times.\n\
        # TYPE antq_t_seconds histogram\n\
        antq_t_seconds_bucket{path=\"direct\",le=\"0.25\"} 2\n\
        antq_t_seconds_bucket{path=\"direct\",le=\"1\"} 3\n\
        antq_t_seconds_bucket{path=\"direct\",le=\"10\"} 4\n\
        antq_t_seconds_bucket{path=\"direct\",le=\"+Inf\"} 6\n\
        antq_t_seconds_sum{path=\"direct\"} 54.875\n\
        antq_t_seconds_count{path=\"direct\"} 6\n";
    assert_eq!(text, expected);
}

#[test]
fn empty_histogram_renders_zeros() {
    let h = Histogram::new(CONNECT_SECONDS);
    let mut r = Registry::new();
    r.histogram("antq_h_seconds", "H.")
        .histogram(&[], &h.snapshot());
    let text = r.render();
    assert!(
        text.contains("antq_h_seconds_bucket{le=\"+Inf\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("antq_h_seconds_sum 0\nantq_h_seconds_count 0\n"));
    assert_eq!(
        text.lines().filter(|l| l.contains("_bucket")).count(),
        CONNECT_SECONDS.len() + 1
    );
}
