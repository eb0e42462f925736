-- ulogpy's SQLite schema.  SQLITE3 maps each column to the stack key of the same name
-- (`_` for `.`); a first column starting with `_` is an id the output leaves alone.
--
-- Applied by `ulogpy db init --sqlite FILE` (and, table by table, by SQLITE3 with
-- create_table=1); every statement is IF NOT EXISTS, so existing tables are kept.

-- @table ulog_ct
-- ulogd's example flow table (one row per event): addresses are the 32-bit integers
-- ulogd's SQLITE3 writes for IPv4 (stack ct1:NFCT,sqlite3_ct:SQLITE3).
CREATE TABLE IF NOT EXISTS ulog_ct (
    flow_start_sec     INT UNSIGNED,
    flow_start_usec    INT UNSIGNED,
    flow_end_sec       INT UNSIGNED,
    flow_end_usec      INT UNSIGNED,
    orig_ip_saddr      INT UNSIGNED,
    orig_ip_daddr      INT UNSIGNED,
    orig_l4_sport      SMALLINT UNSIGNED,
    orig_l4_dport      SMALLINT UNSIGNED,
    orig_ip_protocol   TINYINT UNSIGNED,
    icmp_type          TINYINT UNSIGNED,
    icmp_code          TINYINT UNSIGNED,
    orig_raw_pktlen    INT UNSIGNED,
    orig_raw_pktcount  INT UNSIGNED,
    reply_raw_pktlen   INT UNSIGNED,
    reply_raw_pktcount INT UNSIGNED,
    ct_mark            INT UNSIGNED
);

-- @table ulog_pkt
-- ulogd's example packet table.
CREATE TABLE IF NOT EXISTS ulog_pkt (
    raw_pktlen    INT UNSIGNED,
    raw_pktcount  INT UNSIGNED,
    oob_prefix    VARCHAR(64),
    oob_time_sec  INT UNSIGNED,
    oob_time_usec INT UNSIGNED,
    oob_mark      INT UNSIGNED,
    oob_hook      TINYINT UNSIGNED,
    oob_uid       INT UNSIGNED,
    oob_gid       INT UNSIGNED
);

-- @table ulog2_ct
-- Conntrack history in the layout of the PostgreSQL ulog2_ct table, addresses as text
-- (stack ct:NFCT,ip2str:IP2STR,db:SQLITE3).  With merge_flows=1 a flow's NEW and DESTROY
-- end up in one row, as INSERT_OR_REPLACE_CT keeps them in PostgreSQL.
CREATE TABLE IF NOT EXISTS ulog2_ct (
    _ct_id             INTEGER PRIMARY KEY,
    oob_family         INTEGER,
    orig_ip_saddr_str  TEXT,
    orig_ip_daddr_str  TEXT,
    orig_ip_protocol   INTEGER,
    orig_l4_sport      INTEGER,
    orig_l4_dport      INTEGER,
    orig_raw_pktlen    INTEGER DEFAULT 0,
    orig_raw_pktcount  INTEGER DEFAULT 0,
    reply_ip_saddr_str TEXT,
    reply_ip_daddr_str TEXT,
    reply_ip_protocol  INTEGER,
    reply_l4_sport     INTEGER,
    reply_l4_dport     INTEGER,
    reply_raw_pktlen   INTEGER DEFAULT 0,
    reply_raw_pktcount INTEGER DEFAULT 0,
    icmp_code          INTEGER,
    icmp_type          INTEGER,
    ct_mark            INTEGER DEFAULT 0,
    flow_start_sec     INTEGER DEFAULT 0,
    flow_start_usec    INTEGER DEFAULT 0,
    flow_end_sec       INTEGER DEFAULT 0,
    flow_end_usec      INTEGER DEFAULT 0,
    ct_event           INTEGER DEFAULT 0
);
-- @index ulog2_ct_open_tuples ulog2_ct
-- Finds the open row a DESTROY completes (merge_flows) without scanning the history.
-- Both ports are in it: a port scan (one source port, thousands of destination ports
-- on one host) would otherwise leave every DESTROY scanning all the open rows of the
-- scan.  It replaces ulog2_ct_open_flows, which lacked the destination port.
DROP INDEX IF EXISTS ulog2_ct_open_flows;
CREATE INDEX IF NOT EXISTS ulog2_ct_open_tuples
    ON ulog2_ct (orig_ip_saddr_str, orig_l4_sport, orig_ip_daddr_str, orig_l4_dport)
    WHERE ct_event < 4;
-- @index ulog2_ct_nat_lookup ulog2_ct
-- Who had this public ip:port: after masquerading it is the reply's destination.
CREATE INDEX IF NOT EXISTS ulog2_ct_nat_lookup
    ON ulog2_ct (reply_ip_daddr_str, reply_l4_dport, flow_start_sec);
-- @index ulog2_ct_orig_ip_saddr ulog2_ct
CREATE INDEX IF NOT EXISTS ulog2_ct_orig_ip_saddr ON ulog2_ct (orig_ip_saddr_str);
-- @index ulog2_ct_flow_start ulog2_ct
-- Flows by start time (a time window, a retention DELETE).  There is no index on
-- flow_end_sec: every merged DESTROY changes it, so it moved that flow's entry across
-- the index, a third of each DESTROY's work in SQLite (100,000 flows in-process: 24.1 us
-- of CPU per event with it, 18.8 without).  No lookup of ulogpy's uses it; a history
-- made by an earlier ulogpy keeps its ulog2_ct_flow_end until dropped by hand.
CREATE INDEX IF NOT EXISTS ulog2_ct_flow_start ON ulog2_ct (flow_start_sec);
