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

/// A new database of its own (`<prefix>_<random>`) whose transactions default to
/// SERIALIZABLE (`ALTER DATABASE .. SET default_transaction_isolation`), as some
/// architecture rules demand, and its URL. Drop it with [`drop_database`].
pub async fn serializable_database(prefix: &str) -> (String, String) {
    let name = format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let pool = PgPool::connect(&url()).await.expect("PostgreSQL");
    for sql in [
        format!("CREATE DATABASE {name}"),
        format!("ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'"),
    ] {
        sqlx::query(&sql).execute(&pool).await.expect(&sql);
    }
    pool.close().await;
    let base = url();
    let (server, _) = base.rsplit_once('/').expect("a URL ending in /<database>");
    let db_url = format!("{server}/{name}");
    let probe = PgPool::connect(&db_url).await.expect("connect");
    let (level,): (String,) = sqlx::query_as("SHOW default_transaction_isolation")
        .fetch_one(&probe)
        .await
        .unwrap();
    assert_eq!(
        level, "serializable",
        "the database defaults to SERIALIZABLE"
    );
    probe.close().await;
    (name, db_url)
}

/// Drops a database of [`serializable_database`] (closing what still uses it).
pub async fn drop_database(name: &str) {
    let pool = PgPool::connect(&url()).await.expect("PostgreSQL");
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(&sql).execute(&pool).await.expect(&sql);
    pool.close().await;
}
