//! Assistant text as HTML: CommonMark (with tables, strikethrough and task lists) rendered
//! by `pulldown-cmark`, then sanitised by `ammonia`.
//!
//! Model output is untrusted. Raw HTML in it is shown as text (a `<script>` the model
//! writes about is visible, never run), and the sanitiser then keeps only harmless tags
//! and `http`/`https`/`mailto` links (`javascript:` and relative links lose their `href`),
//! drops images (nothing is fetched from outside), and marks links `noopener noreferrer`.

use std::sync::LazyLock;

use pulldown_cmark::{Event, Options, Parser};

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.rm_tags(["img"])
        .url_schemes(["http", "https", "mailto"].into())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"));
    b
});

/// Renders untrusted Markdown to sanitised HTML.
pub fn to_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|ev| match ev {
        // Raw HTML becomes text: escaped by the HTML writer, so it shows as written.
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    SANITIZER.clean(&html).to_string()
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn markdown_renders() {
        let html = to_html("# Title\n\nSome **bold** and `code`.\n\n```rust\nfn main() {}\n```\n");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<pre><code"), "{html}");
    }

    #[test]
    fn hostile_input_is_inert_text() {
        let html = to_html(
            "<script>alert(1)</script>\n\nhi <img src=x onerror=alert(2)> \
             [click](javascript:alert(3)) [rel](/logout) ![pic](https://example.com/x.png) \
             <a href=\"javascript:alert(4)\">a</a>",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
        // Links keep their text but lose a `javascript:` or relative target; the raw `<a>`
        // is shown as text.
        assert!(!html.contains("<a href"), "{html}");
        assert!(
            html.contains("&lt;a href=\"javascript:alert(4)\"&gt;"),
            "{html}"
        );
        assert!(!html.contains("example.com/x.png\""), "{html}");
    }

    #[test]
    fn links_are_kept_with_rel() {
        let html = to_html("[docs](https://docs.rs)");
        assert!(html.contains("href=\"https://docs.rs\""), "{html}");
        assert!(
            html.contains("rel=\"noopener noreferrer nofollow\""),
            "{html}"
        );
    }
}
