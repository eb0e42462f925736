-- ulogpy's additions to ulogd's MySQL schema (mysql-ulogd2.sql, which holds the tables).
--
-- Applied by `ulogpy db init --mysql`, one object at a time: each `-- @kind name [table]`
-- block runs only when its object is missing, so an existing ulogd database keeps
-- everything else.  ulogd's MySQL schema has no INSERT_OR_REPLACE_CT and its `conntrack`
-- view hides rows whose `state` is 0 (all rows INSERT_CT writes); here `state` holds the
-- conntrack event, and `conntrack_events` (addresses as text) is the view to give MYSQL
-- or DBI as `table`, after IP2STR:
--     stack=ct1:NFCT,ip2str1:IP2STR,my1:MYSQL   table="conntrack_events"
--     procedure="INSERT_OR_REPLACE_CT"          ([ct1] hash_enable=0)

-- The flow table, in ulogd's layout (created only when missing; the packet tables come
-- from ulogd's mysql-ulogd2.sql).
-- @table ulog2_ct
CREATE TABLE `ulog2_ct` (
	`_ct_id` bigint unsigned NOT NULL AUTO_INCREMENT,
	`oob_family` tinyint(3) unsigned DEFAULT NULL,
	`orig_ip_saddr` binary(16) DEFAULT NULL,
	`orig_ip_daddr` binary(16) DEFAULT NULL,
	`orig_ip_protocol` tinyint(3) unsigned DEFAULT NULL,
	`orig_l4_sport` int(5) DEFAULT NULL,
	`orig_l4_dport` int(5) DEFAULT NULL,
	`orig_bytes` bigint DEFAULT 0,
	`orig_packets` bigint DEFAULT 0,
	`reply_ip_saddr` binary(16) DEFAULT NULL,
	`reply_ip_daddr` binary(16) DEFAULT NULL,
	`reply_ip_protocol` tinyint(3) unsigned DEFAULT NULL,
	`reply_l4_sport` int(5) DEFAULT NULL,
	`reply_l4_dport` int(5) DEFAULT NULL,
	`reply_bytes` bigint DEFAULT 0,
	`reply_packets` bigint DEFAULT 0,
	`icmp_code` tinyint(3) DEFAULT NULL,
	`icmp_type` tinyint(3) DEFAULT NULL,
	`ct_mark` bigint DEFAULT 0,
	`flow_start_sec` int(10) DEFAULT 0,
	`flow_start_usec` int(10) DEFAULT 0,
	`flow_end_sec` int(10) DEFAULT 0,
	`flow_end_usec` int(10) DEFAULT 0,
	`state` tinyint(3) unsigned DEFAULT 0,
	UNIQUE KEY `_ct_id` (`_ct_id`)
) ENGINE=INNODB;

-- @view conntrack_events
CREATE SQL SECURITY INVOKER VIEW `conntrack_events` AS
	SELECT _ct_id, oob_family,
	       IF(IS_IPV4_MAPPED(orig_ip_saddr), INET6_NTOA(SUBSTR(orig_ip_saddr, 13)),
	          INET6_NTOA(orig_ip_saddr)) AS orig_ip_saddr_str,
	       IF(IS_IPV4_MAPPED(orig_ip_daddr), INET6_NTOA(SUBSTR(orig_ip_daddr, 13)),
	          INET6_NTOA(orig_ip_daddr)) AS orig_ip_daddr_str,
	       orig_ip_protocol, orig_l4_sport, orig_l4_dport,
	       orig_bytes AS orig_raw_pktlen, orig_packets AS orig_raw_pktcount,
	       IF(IS_IPV4_MAPPED(reply_ip_saddr), INET6_NTOA(SUBSTR(reply_ip_saddr, 13)),
	          INET6_NTOA(reply_ip_saddr)) AS reply_ip_saddr_str,
	       IF(IS_IPV4_MAPPED(reply_ip_daddr), INET6_NTOA(SUBSTR(reply_ip_daddr, 13)),
	          INET6_NTOA(reply_ip_daddr)) AS reply_ip_daddr_str,
	       reply_ip_protocol, reply_l4_sport, reply_l4_dport,
	       reply_bytes AS reply_raw_pktlen, reply_packets AS reply_raw_pktcount,
	       icmp_code, icmp_type, ct_mark,
	       flow_start_sec, flow_start_usec, flow_end_sec, flow_end_usec,
	       state AS ct_event
	FROM ulog2_ct;

-- An address as IP2STR writes it, in ulog2_ct's binary(16) form (IPv4 mapped into IPv6,
-- as IP2BIN writes it), so text and binary writers fill the same rows.
-- @function ULOGPY_ADDR_BIN
CREATE FUNCTION ULOGPY_ADDR_BIN(addr varchar(64)) RETURNS binary(16)
DETERMINISTIC NO SQL
RETURN IF(addr IS NULL OR addr = '', NULL,
          IF(INSTR(addr, ':') = 0, CONCAT(X'00000000000000000000FFFF', INET6_ATON(addr)),
             INET6_ATON(addr)))

-- INSERT_OR_REPLACE_CT: the arguments are conntrack_events' columns, in order (addresses
-- as text: stack NFCT, IP2STR, MYSQL; IP2BIN cannot serve, it never sets
-- reply.ip.daddr.bin, the public address of a masqueraded flow).  A DESTROY (event 4)
-- completes its flow's open row (same tuple, compared NULL-safe so ICMP and ICMPv6
-- flows merge too; `state` < 4) with the counters, mark, end time and event; a DESTROY
-- with no open row, and any other event, inserts a row.
-- @function INSERT_OR_REPLACE_CT
CREATE FUNCTION INSERT_OR_REPLACE_CT(
		_oob_family bigint, _orig_saddr varchar(64), _orig_daddr varchar(64),
		_orig_ip_protocol tinyint(3) unsigned, _orig_l4_sport int(5), _orig_l4_dport int(5),
		_orig_bytes bigint, _orig_packets bigint,
		_reply_saddr varchar(64), _reply_daddr varchar(64),
		_reply_ip_protocol tinyint(3) unsigned, _reply_l4_sport int(5), _reply_l4_dport int(5),
		_reply_bytes bigint, _reply_packets bigint,
		_icmp_code tinyint(3), _icmp_type tinyint(3), _ct_mark bigint,
		_flow_start_sec int(10), _flow_start_usec int(10),
		_flow_end_sec int(10), _flow_end_usec int(10), _ct_event tinyint(3) unsigned
		) RETURNS bigint unsigned
MODIFIES SQL DATA
BEGIN
	DECLARE done bigint unsigned DEFAULT 0;
	DECLARE _orig_ip_saddr binary(16) DEFAULT ULOGPY_ADDR_BIN(_orig_saddr);
	DECLARE _orig_ip_daddr binary(16) DEFAULT ULOGPY_ADDR_BIN(_orig_daddr);
	DECLARE _reply_ip_saddr binary(16) DEFAULT ULOGPY_ADDR_BIN(_reply_saddr);
	DECLARE _reply_ip_daddr binary(16) DEFAULT ULOGPY_ADDR_BIN(_reply_daddr);
	IF _ct_event = 4 THEN
		UPDATE ulog2_ct SET orig_bytes = _orig_bytes, orig_packets = _orig_packets,
			reply_bytes = _reply_bytes, reply_packets = _reply_packets, ct_mark = _ct_mark,
			flow_end_sec = _flow_end_sec, flow_end_usec = _flow_end_usec, state = _ct_event
		WHERE oob_family <=> _oob_family AND orig_ip_saddr <=> _orig_ip_saddr
			AND orig_ip_daddr <=> _orig_ip_daddr AND orig_ip_protocol <=> _orig_ip_protocol
			AND orig_l4_sport <=> _orig_l4_sport AND orig_l4_dport <=> _orig_l4_dport
			AND reply_ip_saddr <=> _reply_ip_saddr AND reply_ip_daddr <=> _reply_ip_daddr
			AND reply_ip_protocol <=> _reply_ip_protocol
			AND reply_l4_sport <=> _reply_l4_sport AND reply_l4_dport <=> _reply_l4_dport
			AND icmp_code <=> _icmp_code AND icmp_type <=> _icmp_type
			AND state < 4;
		SET done = ROW_COUNT();
	END IF;
	IF done = 0 THEN
		INSERT INTO ulog2_ct (oob_family, orig_ip_saddr, orig_ip_daddr, orig_ip_protocol,
			orig_l4_sport, orig_l4_dport, orig_bytes, orig_packets,
			reply_ip_saddr, reply_ip_daddr, reply_ip_protocol, reply_l4_sport, reply_l4_dport,
			reply_bytes, reply_packets, icmp_code, icmp_type, ct_mark,
			flow_start_sec, flow_start_usec, flow_end_sec, flow_end_usec, state)
		VALUES (_oob_family, _orig_ip_saddr, _orig_ip_daddr, _orig_ip_protocol,
			_orig_l4_sport, _orig_l4_dport, _orig_bytes, _orig_packets,
			_reply_ip_saddr, _reply_ip_daddr, _reply_ip_protocol, _reply_l4_sport,
			_reply_l4_dport, _reply_bytes, _reply_packets, _icmp_code, _icmp_type, _ct_mark,
			_flow_start_sec, _flow_start_usec, _flow_end_sec, _flow_end_usec, _ct_event);
		RETURN LAST_INSERT_ID();
	END IF;
	RETURN 0;
END

-- The index nat-lookup's query walks: public address and port, then the start.
-- @index ulog2_ct_nat_lookup ulog2_ct
CREATE INDEX ulog2_ct_nat_lookup ON ulog2_ct (reply_ip_daddr, reply_l4_dport, flow_start_sec);
-- @index ulog2_ct_flow_start ulog2_ct
CREATE INDEX ulog2_ct_flow_start ON ulog2_ct (flow_start_sec);
-- @index ulog2_ct_flow_end ulog2_ct
CREATE INDEX ulog2_ct_flow_end ON ulog2_ct (flow_end_sec);
