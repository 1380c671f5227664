// Creates the least-privileged user the butler connects as (readWrite on its own database).
// Runs once, on the first start of an empty data volume (docker-entrypoint-initdb.d).
db.getSiblingDB("butler").createUser({
  user: "butler",
  pwd: process.env.MONGO_BUTLER_PASSWORD,
  roles: [{ role: "readWrite", db: "butler" }],
});
