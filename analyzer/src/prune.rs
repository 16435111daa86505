//! Which segments and hot batches a SQL scan can skip: the `WHERE`
//! conditions DataFusion pushes down to the table, read for the service
//! and the time range they allow. A segment's name says its service and
//! time range, a hot batch knows both, so a query of one service over the
//! last hour opens only those files. Conditions it does not understand
//! allow everything (DataFusion still applies every filter to the rows).

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

/// What the filters allow: services (`None`: any) and `time` in
/// `[from, to)` (ns; `None`: unbounded).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Bounds {
    pub services: Option<Vec<String>>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Bounds {
    pub fn allows_service(&self, service: Option<&str>) -> bool {
        match (&self.services, service) {
            (Some(allowed), Some(s)) => allowed.iter().any(|a| a == s),
            _ => true,
        }
    }

    /// Whether rows in `[min, max]` (inclusive) may match.
    pub fn allows_time(&self, min: i64, max: i64) -> bool {
        self.from.is_none_or(|f| max >= f) && self.to.is_none_or(|t| min < t)
    }
}

/// The bounds every one of `filters` (ANDed) implies.
pub(crate) fn bounds(filters: &[Expr]) -> Bounds {
    let mut b = Bounds::default();
    for f in filters {
        add(&mut b, f);
    }
    b
}

fn add(b: &mut Bounds, e: &Expr) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            add(b, left);
            add(b, right);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            // column OP literal, or literal OP column (flipped).
            let (col, op, lit) = match (column(left), literal(right), column(right), literal(left))
            {
                (Some(c), Some(v), _, _) => (c, *op, v),
                (_, _, Some(c), Some(v)) => match op.swap() {
                    Some(op) => (c, op, v),
                    None => return,
                },
                _ => return,
            };
            match (col, op) {
                ("service_name", Operator::Eq) => {
                    if let Some(s) = text(&lit) {
                        restrict(b, vec![s]);
                    }
                }
                ("time", op) => {
                    if let Some(v) = nanos(&lit) {
                        time(b, op, v);
                    }
                }
                _ => {}
            }
        }
        Expr::InList(l) if !l.negated && column(&l.expr) == Some("service_name") => {
            let values: Option<Vec<String>> = l
                .list
                .iter()
                .map(|e| literal(e).as_ref().and_then(text))
                .collect();
            if let Some(v) = values {
                restrict(b, v);
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if column(expr) == Some("time") => {
            if let (Some(lo), Some(hi)) = (
                literal(low).and_then(|v| nanos(&v)),
                literal(high).and_then(|v| nanos(&v)),
            ) {
                time(b, Operator::GtEq, lo);
                time(b, Operator::LtEq, hi);
            }
        }
        _ => {}
    }
}

fn restrict(b: &mut Bounds, allowed: Vec<String>) {
    b.services = Some(match b.services.take() {
        Some(prev) => prev.into_iter().filter(|s| allowed.contains(s)).collect(),
        None => allowed,
    });
}

fn time(b: &mut Bounds, op: Operator, v: i64) {
    let (from, to) = match op {
        Operator::Eq => (Some(v), v.checked_add(1)),
        Operator::Gt => (v.checked_add(1), None),
        Operator::GtEq => (Some(v), None),
        Operator::Lt => (None, Some(v)),
        Operator::LtEq => (None, v.checked_add(1)),
        _ => (None, None),
    };
    if let Some(f) = from {
        b.from = Some(b.from.map_or(f, |x| x.max(f)));
    }
    if let Some(t) = to {
        b.to = Some(b.to.map_or(t, |x| x.min(t)));
    }
}

/// The column name of `e`, through casts that keep every value (a
/// dictionary column compared with a string may be cast). A cast to a
/// coarser time unit is not looked through: `CAST(time AS TIMESTAMP(0)) = x`
/// matches a whole second, not the instant `x`.
fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) if lossless(c.field.data_type()) => column(&c.expr),
        Expr::TryCast(c) if lossless(c.field.data_type()) => column(&c.expr),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        Expr::Cast(c) if lossless(c.field.data_type()) => literal(&c.expr),
        _ => None,
    }
}

/// Whether a cast to `t` keeps the values pruning reads: text, and times
/// in nanoseconds.
fn lossless(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => true,
        DataType::Dictionary(_, v) => lossless(v),
        _ => false,
    }
}

fn text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        ScalarValue::Dictionary(_, inner) => text(inner),
        _ => None,
    }
}

fn nanos(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(n: i64) -> Expr {
        Expr::Literal(
            ScalarValue::TimestampNanosecond(Some(n), Some("UTC".into())),
            None,
        )
    }

    #[test]
    fn reads_services_and_time_ranges() {
        let b = bounds(&[
            col("service_name").eq(lit("checkout")),
            col("time").gt_eq(ts(100)).and(ts(200).gt(col("time"))),
        ]);
        assert_eq!(b.services, Some(vec!["checkout".to_string()]));
        assert_eq!((b.from, b.to), (Some(100), Some(200)));
        assert!(b.allows_time(150, 400) && !b.allows_time(200, 300) && !b.allows_time(0, 99));
        assert!(b.allows_service(Some("checkout")) && !b.allows_service(Some("cart")));
        assert!(b.allows_service(None), "files of any service are kept");

        let b = bounds(&[col("service_name").in_list(vec![lit("a"), lit("b")], false)]);
        assert_eq!(b.services, Some(vec!["a".to_string(), "b".to_string()]));
        let b = bounds(&[col("time").between(ts(5), ts(9))]);
        assert_eq!((b.from, b.to), (Some(5), Some(10)));
    }

    #[test]
    fn a_cast_to_a_coarser_time_unit_prunes_nothing() {
        let secs = |e: Expr| {
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(e),
                DataType::Timestamp(TimeUnit::Second, None),
            ))
        };
        // CAST(time AS TIMESTAMP(0)) = 10 s matches 10.0–10.999… s.
        let b = bounds(&[secs(col("time")).eq(ts(10_000_000_000))]);
        assert_eq!((b.from, b.to), (None, None));
        assert!(b.allows_time(10_500_000_000, 10_600_000_000));
        // A literal cast to seconds is not the instant it was either.
        let b = bounds(&[col("time").gt_eq(secs(ts(10_700_000_000)))]);
        assert_eq!(b.from, None);
        // Casts that keep every value are still looked through.
        let ns = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("time")),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        ));
        assert_eq!(bounds(&[ns.gt_eq(ts(7))]).from, Some(7));
        let svc = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("service_name")),
            DataType::Utf8,
        ));
        assert_eq!(
            bounds(&[svc.eq(lit("checkout"))]).services,
            Some(vec!["checkout".to_string()])
        );
    }

    #[test]
    fn anything_else_allows_everything() {
        for e in [
            col("service_name").not_eq(lit("x")),
            col("service_name").in_list(vec![lit("a")], true),
            col("service_name")
                .eq(lit("a"))
                .or(col("service_name").eq(lit("b"))),
            col("duration_ns").gt(lit(5_i64)),
            !col("time").between(ts(5), ts(9)),
        ] {
            assert_eq!(bounds(std::slice::from_ref(&e)), Bounds::default(), "{e}");
        }
    }
}
