//! The test database: a pool on `MQ_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and a fresh schema per test.

use mq_core::sqlx::{self, PgPool};

/// The database the tests use.
pub fn url() -> String {
    std::env::var("MQ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A new schema of its own (`<prefix>_<random>`), and the URL whose connections use it as
/// their `search_path` (so unqualified tables of mq and of the examples land in it).
pub async fn fresh_schema(prefix: &str) -> (String, String) {
    let schema = format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let pool = PgPool::connect(&url())
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 with database `test` (scripts/test.sh starts it)");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create schema");
    pool.close().await;
    let url = format!("{}?options[search_path]={schema}", url());
    (schema, url)
}

/// A pool on `url` (a [`fresh_schema`] URL).
pub async fn pool(url: &str, size: u32) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .expect("connect to PostgreSQL")
}

/// The YAML of `mq.datasource` for `url`.
pub fn datasource_yaml(url: &str) -> String {
    format!("mq:\n  datasource:\n    url: \"{url}\"\n    pool-size: 8\n")
}

/// `SELECT count(*)` of a query.
pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n
}
