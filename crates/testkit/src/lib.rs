//! Test kit: in-memory fakes of every port and real test services.
