//! The one place errors become GraphQL errors: every error gets a stable
//! `code` extension (and `field` for input errors), the same codes the HTTP
//! routes answer with; internals are logged and replaced by "internal
//! error". Also the alias limit.
//!
//! HTTP requests call [`with_codes`] and [`check_aliases`] around execution;
//! WebSocket subscriptions get the same through the [`ErrorCodes`] extension.
//! (An extension on the HTTP schema would wrap every field resolution in a
//! boxed future, which measurably slows large lists.)

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Response, ServerError, ServerResult, Value, Variables};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::ApiError;

/// Adds codes to errors and limits aliases.
pub struct ErrorCodes {
    pub max_aliases: usize,
}

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExt {
            max_aliases: self.max_aliases,
        })
    }
}

struct ErrorCodesExt {
    max_aliases: usize,
}

/// Adds codes to every error of a response.
pub fn with_codes(mut resp: Response) -> Response {
    for err in &mut resp.errors {
        annotate(err);
    }
    resp
}

/// An error raised outside execution (the caller's credential, the rate
/// limit) as a GraphQL error with its code.
pub fn server_error(err: &ApiError) -> ServerError {
    let mut e = ServerError::new(err.public_message(), None);
    let ext = e.extensions.get_or_insert_with(Default::default);
    ext.set("code", err.code());
    if let Some(f) = err.field() {
        ext.set("field", Value::String(f.to_owned()));
    }
    e
}

fn annotate(err: &mut ServerError) {
    let classified = err.source::<ApiError>().map(|api| {
        if matches!(api, ApiError::Internal(_)) {
            tracing::error!(path = ?err.path, "in a resolver");
        }
        (
            api.code(),
            api.field().map(str::to_owned),
            api.public_message(),
        )
    });
    let (code, field) = match classified {
        Some((code, field, message)) => {
            err.message = message;
            (code, field)
        }
        // Errors raised by the GraphQL engine itself: parse, validation
        // and limits come without a path; an argument whose value a scalar
        // refuses (a variable's `DateTime` that is not one) comes with the
        // field's path, but is the caller's input all the same.
        None if err.path.is_empty() || is_argument_error(&err.message) => ("VALIDATION", None),
        None => {
            tracing::error!(message = %err.message, path = ?err.path, "unclassified resolver error");
            err.message = "internal error".into();
            ("INTERNAL", None)
        }
    };
    let already = err
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some());
    if already {
        return;
    }
    let ext = err.extensions.get_or_insert_with(Default::default);
    ext.set("code", code);
    if let Some(f) = field {
        ext.set("field", Value::String(f));
    }
}

/// Whether the engine raised this while reading an argument's value.
fn is_argument_error(message: &str) -> bool {
    message.starts_with("Failed to parse \"") || message.starts_with("Invalid value for argument")
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|sel| match &sel.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(i) => count_aliases(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Rejects a document with more than `max` aliases (a cheap amplification vector).
pub fn check_aliases(doc: &ExecutableDocument, max: usize) -> Result<(), ServerError> {
    let n = aliases_in(doc);
    if n > max {
        return Err(ServerError::new(
            format!("query uses {n} aliases; at most {max} are allowed"),
            None,
        ));
    }
    Ok(())
}

fn aliases_in(doc: &ExecutableDocument) -> usize {
    let ops: usize = doc
        .operations
        .iter()
        .map(|(_, op)| count_aliases(&op.node.selection_set.node))
        .sum();
    let frags: usize = doc
        .fragments
        .values()
        .map(|f| count_aliases(&f.node.selection_set.node))
        .sum();
    ops + frags
}

#[async_trait::async_trait]
impl Extension for ErrorCodesExt {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        check_aliases(&doc, self.max_aliases)?;
        // Queries and mutations go over HTTP, where each one is authenticated
        // and rate-limited; a socket only carries subscriptions.
        let only_subscriptions = doc
            .operations
            .iter()
            .all(|(_, op)| op.node.ty == OperationType::Subscription);
        if !only_subscriptions {
            return Err(ServerError::new(
                "only subscriptions are served over WebSocket; send queries and mutations over HTTP",
                None,
            ));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_error_keeps_its_code_and_field_in_graphql() {
        let errors = [
            ApiError::validation("input.name", "must not be empty"),
            ApiError::Unauthenticated("sign in first".into()),
            ApiError::Forbidden("read-only".into()),
            ApiError::not_found("tenant"),
            ApiError::conflict("input.slug", "is taken"),
            ApiError::Unavailable("no broker".into()),
            ApiError::RateLimited {
                retry_after_secs: 3,
            },
            ApiError::UnsupportedMediaType("text/plain".into()),
            ApiError::internal("secret detail"),
        ];
        for api in errors {
            let (code, field) = (api.code(), api.field().map(str::to_owned));
            // Raised before execution.
            let before = server_error(&api);
            // Raised by a resolver (annotated after execution).
            let mut during =
                async_graphql::Error::from(api).into_server_error(async_graphql::Pos::default());
            during.path = vec![async_graphql::PathSegment::Field("f".into())];
            annotate(&mut during);
            for e in [before, during] {
                let ext = e.extensions.as_ref().unwrap();
                assert_eq!(ext.get("code"), Some(&Value::from(code)), "{code}");
                assert_eq!(ext.get("field").cloned(), field.clone().map(Value::String));
                if code == "INTERNAL" {
                    assert_eq!(e.message, "internal error");
                }
            }
        }
    }
}
