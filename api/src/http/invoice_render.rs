//! A finalized invoice as a document: HTML, and PDF written by hand (one
//! standard font, text only: no dependency, and every figure is the stored
//! decimal text, so the document says exactly what the invoice row says).

use dotmac_billing::{InvoiceLine, LineKind};

use crate::store::billing_rows::InvoiceRow;

/// One text line of the document, with whether it is a heading.
fn text_lines(row: &InvoiceRow, tenant_name: &str, lines: &[InvoiceLine]) -> Vec<(bool, String)> {
    let mut out = vec![
        (
            true,
            format!("Invoice {}", row.number.as_deref().unwrap_or("(draft)")),
        ),
        (
            false,
            format!("Billed to: {tenant_name} ({})", row.tenant_id),
        ),
        (
            false,
            format!("Period: {} to {} (UTC)", row.period_start, row.period_end),
        ),
        (
            false,
            format!(
                "Issued: {}   Due: {}",
                row.finalized_at
                    .map(|t| t.date_naive().to_string())
                    .unwrap_or_default(),
                row.due_at
                    .map(|t| t.date_naive().to_string())
                    .unwrap_or_default()
            ),
        ),
        (false, String::new()),
        (true, "Lines".into()),
    ];
    for line in lines {
        out.push((
            false,
            format!("{}   {} {}", line.description, line.total, row.currency),
        ));
        let rating = match &line.kind {
            LineKind::Usage { rating, .. } | LineKind::Adjustment { rating, .. } => Some(rating),
            _ => None,
        };
        if let Some(r) = rating {
            if !r.included.is_zero() {
                out.push((false, format!("    included: {} units free", r.included)));
            }
            for t in &r.tiers {
                let upper = t
                    .up_to
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "and above".into());
                out.push((
                    false,
                    format!(
                        "    tier {}: above {} up to {}: {} x {} + {} = {}",
                        t.tier + 1,
                        t.from,
                        upper,
                        t.quantity,
                        t.unit_price,
                        t.flat_fee,
                        t.amount
                    ),
                ));
            }
        }
        if !line.discount.is_zero() || !line.tax.is_zero() {
            out.push((
                false,
                format!(
                    "    amount {}, discount {}, tax {}{}",
                    line.amount,
                    line.discount,
                    line.tax,
                    line.tax_rate
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    out.push((false, String::new()));
    for (label, value) in [
        ("Subtotal", &row.subtotal),
        ("Discount", &row.discount),
        ("Tax", &row.tax),
        ("Total", &row.total),
        ("Amount due", &row.amount_due),
    ] {
        out.push((
            label == "Total",
            format!("{label}: {value} {}", row.currency),
        ));
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The invoice as a standalone HTML page.
pub fn html(row: &InvoiceRow, tenant_name: &str, lines: &[InvoiceLine]) -> String {
    let mut body = String::new();
    for (heading, text) in text_lines(row, tenant_name, lines) {
        let text = escape_html(&text);
        if heading {
            body.push_str(&format!("<h2>{text}</h2>\n"));
        } else if text.starts_with("    ") {
            body.push_str(&format!("<p class=\"detail\">{}</p>\n", text.trim_start()));
        } else {
            body.push_str(&format!("<p>{text}</p>\n"));
        }
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Invoice {}</title>\
         <style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}.detail{{margin-left:2em;color:#444;font-size:90%}}</style>\
         </head><body>\n{body}</body></html>\n",
        escape_html(row.number.as_deref().unwrap_or("draft"))
    )
}

/// PDF string literal text: ASCII only, with its three specials escaped.
fn pdf_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// The invoice as a PDF (A4, Helvetica, as many pages as it needs).
pub fn pdf(row: &InvoiceRow, tenant_name: &str, lines: &[InvoiceLine]) -> Vec<u8> {
    const PER_PAGE: usize = 60;
    let text = text_lines(row, tenant_name, lines);
    let pages: Vec<&[(bool, String)]> = text.chunks(PER_PAGE).collect();
    // Objects: 1 catalog, 2 pages, 3 font, 4 bold font, then per page its
    // page object and its content stream.
    let mut objects: Vec<String> = Vec::new();
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 5 + 2 * i))
        .collect();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    objects.push(format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    ));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into());
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>".into());
    for (i, page) in pages.iter().enumerate() {
        let mut stream = String::from("BT\n/F1 10 Tf\n50 800 Td\n14 TL\n");
        for (heading, line) in page.iter() {
            let font = if *heading { "/F2 12 Tf" } else { "/F1 10 Tf" };
            stream.push_str(&format!("{font}\n({}) Tj\nT*\n", pdf_text(line)));
        }
        stream.push_str("ET\n");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
            6 + 2 * i
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{stream}endstream",
            stream.len()
        ));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_text_is_escaped_and_ascii() {
        assert_eq!(pdf_text("a (b) \\ é"), "a \\(b\\) \\\\ ?");
        assert_eq!(escape_html("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }
}
