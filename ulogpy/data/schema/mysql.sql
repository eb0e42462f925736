-- ulogpy's MySQL / MariaDB schema: the tables, views and routines ulogd 2.0.8's MYSQL stacks
-- write to (format version 6, the layout of ulogd's mysql-ulogd2.sql), plus ulogpy's flow
-- function, view and the indexes a NAT lookup needs.
--
-- Applied by `ulogpy db init --mysql`, one object at a time: each `-- @kind name [table]`
-- block runs only when its object is missing, so an existing ulogd database keeps its data
-- and objects and only gets what it lacks.  A block may carry `-- @stale QUERY` lines: when
-- the object exists and QUERY counts more than zero rows, the existing object is wrong and
-- is replaced (a routine, a view) or changed (a column).  That is how a database made from
-- ulogd's file loses its signed `mac_protocol`, which makes the server refuse every IPv6
-- packet (ethertype 0x86dd = 34525 does not fit a signed smallint).
--
-- Packets: stack ...,ip2bin1:IP2BIN,mac2str1:HWHDR,my1:MYSQL  table="ulog"
--          procedure="INSERT_PACKET_FULL"
-- Flows:   stack ct1:NFCT,ip2bin1:IP2BIN,my1:MYSQL  table="conntrack"  procedure="INSERT_CT"
--          or ct1:NFCT,ip2str1:IP2STR,my1:MYSQL  table="conntrack_events"
--          procedure="INSERT_OR_REPLACE_CT"  (one row per flow, see below)
-- Counters: stack acct1:NFACCT,my1:MYSQL  table="nfacct"  procedure="INSERT_NFACCT"
--
-- Addresses are binary(16), IPv4 mapped into IPv6 (::ffff:a.b.c.d), as IP2BIN writes them.

-- @table _format
CREATE TABLE `_format` (`version` int NOT NULL) ENGINE=InnoDB;
INSERT INTO `_format` (`version`) VALUES (6);

-- @table _extensions
CREATE TABLE `_extensions` (
    `ext_id`     int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `ext_name`   varchar(64) NOT NULL,
    `table_name` varchar(64) NOT NULL,
    `join_name`  varchar(64) NOT NULL
) ENGINE=InnoDB;

-- @table ulog2
-- One row per logged packet; the protocol tables below hang off its _id.
CREATE TABLE `ulog2` (
    `_id`            bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `oob_time_sec`   int unsigned,
    `oob_time_usec`  int unsigned,
    `oob_hook`       tinyint unsigned,
    `oob_prefix`     varchar(32),
    `oob_mark`       int unsigned,
    `oob_in`         varchar(32),
    `oob_out`        varchar(32),
    `oob_family`     tinyint unsigned,
    `ip_saddr`       binary(16),
    `ip_daddr`       binary(16),
    `ip_protocol`    tinyint unsigned,
    `ip_tos`         tinyint unsigned,
    `ip_ttl`         tinyint unsigned,
    `ip_totlen`      smallint unsigned,
    `ip_ihl`         tinyint unsigned,
    `ip_csum`        smallint unsigned,
    `ip_id`          smallint unsigned,
    `ip_fragoff`     smallint unsigned,
    `ip6_payloadlen` smallint unsigned,
    `ip6_priority`   tinyint unsigned,
    `ip6_hoplimit`   tinyint unsigned,
    `ip6_flowlabel`  int,
    `ip6_fragoff`    smallint,
    `ip6_fragid`     int unsigned,
    `label`          tinyint unsigned,
    `mac_id`         bigint unsigned,
    `timestamp`      timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB COMMENT='IP packets';

-- Index names are ulogd's, so a ulogd database is seen to have them.
-- @index oob_family ulog2
CREATE INDEX `oob_family` ON `ulog2` (`oob_family`);
-- @index ip_saddr ulog2
CREATE INDEX `ip_saddr` ON `ulog2` (`ip_saddr`);
-- @index ip_daddr ulog2
CREATE INDEX `ip_daddr` ON `ulog2` (`ip_daddr`);
-- @index timestamp ulog2
CREATE INDEX `timestamp` ON `ulog2` (`timestamp`);

-- @table mac
-- Ethernet headers, each (source, destination, ethertype) stored once.  The ethertype is
-- unsigned: IPv6's 0x86dd does not fit a signed smallint.
CREATE TABLE `mac` (
    `_mac_id`      bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `mac_saddr`    varchar(32),
    `mac_daddr`    varchar(32),
    `mac_protocol` smallint unsigned
) ENGINE=InnoDB;

-- @column mac_protocol mac
-- @stale SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()
-- @stale AND table_name = 'mac' AND column_name = 'mac_protocol'
-- @stale AND column_type NOT LIKE '%unsigned%'
ALTER TABLE `mac` MODIFY `mac_protocol` smallint unsigned;

-- @index mac_addr mac
CREATE UNIQUE INDEX `mac_addr` ON `mac` (`mac_saddr`, `mac_daddr`, `mac_protocol`);

-- @table hwhdr
-- The link-layer header of packets that did not come from Ethernet.
CREATE TABLE `hwhdr` (
    `_hw_id`     bigint unsigned NOT NULL PRIMARY KEY,
    `raw_type`   int unsigned,
    `raw_header` varchar(255)
) ENGINE=InnoDB;
-- @index raw_type hwhdr
CREATE INDEX `raw_type` ON `hwhdr` (`raw_type`);
-- @index raw_header hwhdr
CREATE INDEX `raw_header` ON `hwhdr` (`raw_header`);

-- @table tcp
CREATE TABLE `tcp` (
    `_tcp_id`    bigint unsigned NOT NULL PRIMARY KEY,
    `tcp_sport`  int unsigned,
    `tcp_dport`  int unsigned,
    `tcp_seq`    int unsigned,
    `tcp_ackseq` int unsigned,
    `tcp_window` int unsigned,
    `tcp_urg`    tinyint,
    `tcp_urgp`   int unsigned,
    `tcp_ack`    tinyint,
    `tcp_psh`    tinyint,
    `tcp_rst`    tinyint,
    `tcp_syn`    tinyint,
    `tcp_fin`    tinyint
) ENGINE=InnoDB;
-- @index tcp_sport tcp
CREATE INDEX `tcp_sport` ON `tcp` (`tcp_sport`);
-- @index tcp_dport tcp
CREATE INDEX `tcp_dport` ON `tcp` (`tcp_dport`);

-- @table udp
CREATE TABLE `udp` (
    `_udp_id`   bigint unsigned NOT NULL PRIMARY KEY,
    `udp_sport` int unsigned,
    `udp_dport` int unsigned,
    `udp_len`   int unsigned
) ENGINE=InnoDB;
-- @index udp_sport udp
CREATE INDEX `udp_sport` ON `udp` (`udp_sport`);
-- @index udp_dport udp
CREATE INDEX `udp_dport` ON `udp` (`udp_dport`);

-- @table sctp
CREATE TABLE `sctp` (
    `_sctp_id`   bigint unsigned NOT NULL PRIMARY KEY,
    `sctp_sport` int unsigned,
    `sctp_dport` int unsigned,
    `sctp_csum`  int unsigned
) ENGINE=InnoDB;
-- @index sctp_sport sctp
CREATE INDEX `sctp_sport` ON `sctp` (`sctp_sport`);
-- @index sctp_dport sctp
CREATE INDEX `sctp_dport` ON `sctp` (`sctp_dport`);

-- @table icmp
CREATE TABLE `icmp` (
    `_icmp_id`     bigint unsigned NOT NULL PRIMARY KEY,
    `icmp_type`    tinyint unsigned,
    `icmp_code`    tinyint unsigned,
    `icmp_echoid`  smallint unsigned,
    `icmp_echoseq` smallint unsigned,
    `icmp_gateway` int unsigned,
    `icmp_fragmtu` smallint unsigned
) ENGINE=InnoDB;

-- @table icmpv6
CREATE TABLE `icmpv6` (
    `_icmpv6_id`     bigint unsigned NOT NULL PRIMARY KEY,
    `icmpv6_type`    tinyint unsigned,
    `icmpv6_code`    tinyint unsigned,
    `icmpv6_echoid`  smallint unsigned,
    `icmpv6_echoseq` smallint unsigned,
    `icmpv6_csum`    int unsigned
) ENGINE=InnoDB;

-- @table nfacct
-- One row per NFACCT counter reading (ulogd's MySQL file has no such table; the layout is
-- that of its PostgreSQL one, counters widened to 64 bits, behind an id: ulogd's MYSQL
-- never sends a value for a table's first column, whatever its name).
CREATE TABLE `nfacct` (
    `_nfacct_id`    bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `sum_name`      varchar(128),
    `sum_pkts`      bigint unsigned DEFAULT 0,
    `sum_bytes`     bigint unsigned DEFAULT 0,
    `oob_time_sec`  int unsigned,
    `oob_time_usec` int unsigned
) ENGINE=InnoDB;
-- @index unique_acct nfacct
CREATE UNIQUE INDEX `unique_acct` ON `nfacct` (`sum_name`, `oob_time_sec`, `oob_time_usec`);

-- @table ip_proto
CREATE TABLE `ip_proto` (
    `_proto_id`  int unsigned NOT NULL PRIMARY KEY,
    `proto_name` varchar(16),
    `proto_desc` varchar(255)
) ENGINE=InnoDB;
INSERT INTO `ip_proto` (`_proto_id`, `proto_name`, `proto_desc`) VALUES
    (0, 'ip', 'internet protocol, pseudo protocol number'),
    (1, 'icmp', 'internet control message protocol'),
    (2, 'igmp', 'Internet Group Management'),
    (3, 'ggp', 'gateway-gateway protocol'),
    (4, 'ipencap', 'IP encapsulated in IP (officially ''IP'')'),
    (5, 'st', 'ST datagram mode'),
    (6, 'tcp', 'transmission control protocol'),
    (17, 'udp', 'user datagram protocol'),
    (41, 'ipv6', 'Internet Protocol, version 6'),
    (58, 'ipv6-icmp', 'ICMP for IPv6'),
    (132, 'sctp', 'Stream Control Transmission Protocol');

-- @table nufw
CREATE TABLE `nufw` (
    `_nufw_id`   bigint unsigned NOT NULL PRIMARY KEY,
    `username`   varchar(30),
    `user_id`    smallint unsigned,
    `client_os`  varchar(100),
    `client_app` varchar(256)
) ENGINE=InnoDB;
INSERT INTO `_extensions` (`ext_name`, `table_name`, `join_name`) VALUES ('nufw', 'nufw', '_nufw_id');

-- A protocol row belongs to its packet.  Constraint names are ulogd's (its
-- ULOG2_ADD_FOREIGN_KEYS), so a ulogd database is seen to have them.
-- @constraint _tcp_id tcp
ALTER TABLE `tcp` ADD CONSTRAINT `_tcp_id` FOREIGN KEY (`_tcp_id`) REFERENCES `ulog2` (`_id`);
-- @constraint _udp_id udp
ALTER TABLE `udp` ADD CONSTRAINT `_udp_id` FOREIGN KEY (`_udp_id`) REFERENCES `ulog2` (`_id`);
-- @constraint _icmp_id icmp
ALTER TABLE `icmp` ADD CONSTRAINT `_icmp_id` FOREIGN KEY (`_icmp_id`) REFERENCES `ulog2` (`_id`);
-- @constraint _icmpv6_id icmpv6
ALTER TABLE `icmpv6` ADD CONSTRAINT `_icmpv6_id`
    FOREIGN KEY (`_icmpv6_id`) REFERENCES `ulog2` (`_id`);

-- @view view_tcp
CREATE SQL SECURITY INVOKER VIEW `view_tcp` AS
    SELECT * FROM ulog2 JOIN tcp ON ulog2._id = tcp._tcp_id;
-- @view view_udp
CREATE SQL SECURITY INVOKER VIEW `view_udp` AS
    SELECT * FROM ulog2 JOIN udp ON ulog2._id = udp._udp_id;
-- @view view_icmp
CREATE SQL SECURITY INVOKER VIEW `view_icmp` AS
    SELECT * FROM ulog2 JOIN icmp ON ulog2._id = icmp._icmp_id;
-- @view view_icmpv6
CREATE SQL SECURITY INVOKER VIEW `view_icmpv6` AS
    SELECT * FROM ulog2 JOIN icmpv6 ON ulog2._id = icmpv6._icmpv6_id;
-- @view view_nufw
CREATE SQL SECURITY INVOKER VIEW `view_nufw` AS
    SELECT * FROM ulog2 JOIN nufw ON ulog2._id = nufw._nufw_id;

-- @view ulog
-- The packet stack's argument list: MYSQL reads these column names (as keys: `_` becomes
-- `.`) in order, skips the leading id, and calls INSERT_PACKET_FULL with the values.
-- Aliases turn table columns into key names.
CREATE SQL SECURITY INVOKER VIEW `ulog` AS
    SELECT _id, oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, oob_in, oob_out,
           oob_family, ip_saddr AS ip_saddr_bin, ip_daddr AS ip_daddr_bin, ip_protocol,
           ip_tos, ip_ttl, ip_totlen, ip_ihl, ip_csum, ip_id, ip_fragoff, ip6_payloadlen,
           ip6_priority, ip6_hoplimit, ip6_flowlabel, ip6_fragoff, ip6_fragid,
           tcp_sport, tcp_dport, tcp_seq, tcp_ackseq, tcp_window, tcp_urg, tcp_urgp, tcp_ack,
           tcp_psh, tcp_rst, tcp_syn, tcp_fin,
           udp_sport, udp_dport, udp_len,
           icmp_type, icmp_code, icmp_echoid, icmp_echoseq, icmp_gateway, icmp_fragmtu,
           icmpv6_type, icmpv6_code, icmpv6_echoid, icmpv6_echoseq, icmpv6_csum,
           raw_type, raw_header AS mac_str, mac_saddr AS mac_saddr_str,
           mac_daddr AS mac_daddr_str, mac_protocol AS oob_protocol, label AS raw_label,
           sctp_sport, sctp_dport, sctp_csum
    FROM ulog2
    LEFT JOIN tcp ON tcp._tcp_id = ulog2._id
    LEFT JOIN udp ON udp._udp_id = ulog2._id
    LEFT JOIN icmp ON icmp._icmp_id = ulog2._id
    LEFT JOIN mac ON mac._mac_id = ulog2.mac_id
    LEFT JOIN hwhdr ON hwhdr._hw_id = ulog2._id
    LEFT JOIN icmpv6 ON icmpv6._icmpv6_id = ulog2._id
    LEFT JOIN sctp ON sctp._sctp_id = ulog2._id;

-- @function BIN_TO_IPV6
-- A binary(16) address as text, in ulogd's spelling: ::ffff:a.b.c.d for IPv4-mapped
-- ones, else eight groups of four lowercase hex digits (no `::` shortening).
CREATE FUNCTION BIN_TO_IPV6(addr binary(16)) RETURNS varchar(64)
SQL SECURITY INVOKER DETERMINISTIC NO SQL
RETURN IF(IS_IPV4_MAPPED(addr), CONCAT('::ffff:', INET6_NTOA(SUBSTR(addr, 13))),
          REGEXP_REPLACE(LOWER(HEX(addr)), '([0-9a-f]{4})(?=.)', '\\1:'))

-- @view view_tcp_quad
CREATE SQL SECURITY INVOKER VIEW `view_tcp_quad` AS
    SELECT ulog2._id, BIN_TO_IPV6(ulog2.ip_saddr) AS ip_saddr_str, tcp.tcp_sport,
           BIN_TO_IPV6(ulog2.ip_daddr) AS ip_daddr_str, tcp.tcp_dport
    FROM ulog2 JOIN tcp ON ulog2._id = tcp._tcp_id;
-- @view view_udp_quad
CREATE SQL SECURITY INVOKER VIEW `view_udp_quad` AS
    SELECT ulog2._id, BIN_TO_IPV6(ulog2.ip_saddr) AS ip_saddr_str, udp.udp_sport,
           BIN_TO_IPV6(ulog2.ip_daddr) AS ip_daddr_str, udp.udp_dport
    FROM ulog2 JOIN udp ON ulog2._id = udp._udp_id;

-- @function INSERT_IP_PACKET
CREATE FUNCTION INSERT_IP_PACKET(
        p_time_sec int unsigned, p_time_usec int unsigned, p_hook tinyint unsigned,
        p_prefix varchar(32), p_mark int unsigned, p_in varchar(32), p_out varchar(32),
        p_family tinyint unsigned, p_saddr binary(16), p_daddr binary(16),
        p_protocol tinyint unsigned) RETURNS bigint unsigned
SQL SECURITY INVOKER NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
    INSERT INTO ulog2 (oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, oob_in,
                       oob_out, oob_family, ip_saddr, ip_daddr, ip_protocol)
    VALUES (p_time_sec, p_time_usec, p_hook, p_prefix, p_mark, p_in, p_out, p_family,
            p_saddr, p_daddr, p_protocol);
    RETURN LAST_INSERT_ID();
END

-- @function INSERT_IP_PACKET_FULL
CREATE FUNCTION INSERT_IP_PACKET_FULL(
        p_time_sec int unsigned, p_time_usec int unsigned, p_hook tinyint unsigned,
        p_prefix varchar(32), p_mark int unsigned, p_in varchar(32), p_out varchar(32),
        p_family tinyint unsigned, p_saddr binary(16), p_daddr binary(16),
        p_protocol tinyint unsigned, p_tos tinyint unsigned, p_ttl tinyint unsigned,
        p_totlen smallint unsigned, p_ihl tinyint unsigned, p_csum smallint unsigned,
        p_ipid smallint unsigned, p_fragoff smallint unsigned,
        p6_payloadlen smallint unsigned, p6_priority tinyint unsigned,
        p6_hoplimit tinyint unsigned, p6_flowlabel int, p6_fragoff smallint,
        p6_fragid int unsigned, p_label tinyint unsigned) RETURNS bigint unsigned
SQL SECURITY INVOKER NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
    INSERT INTO ulog2 (oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, oob_in,
                       oob_out, oob_family, ip_saddr, ip_daddr, ip_protocol, ip_tos, ip_ttl,
                       ip_totlen, ip_ihl, ip_csum, ip_id, ip_fragoff, ip6_payloadlen,
                       ip6_priority, ip6_hoplimit, ip6_flowlabel, ip6_fragoff, ip6_fragid,
                       label)
    VALUES (p_time_sec, p_time_usec, p_hook, p_prefix, p_mark, p_in, p_out, p_family,
            p_saddr, p_daddr, p_protocol, p_tos, p_ttl, p_totlen, p_ihl, p_csum, p_ipid,
            p_fragoff, p6_payloadlen, p6_priority, p6_hoplimit, p6_flowlabel, p6_fragoff,
            p6_fragid, p_label);
    RETURN LAST_INSERT_ID();
END

-- @procedure PACKET_ADD_TCP_FULL
CREATE PROCEDURE PACKET_ADD_TCP_FULL(
        IN p_id bigint unsigned, IN p_sport smallint unsigned, IN p_dport smallint unsigned,
        IN p_seq int unsigned, IN p_ackseq int unsigned, IN p_window smallint unsigned,
        IN p_urg tinyint, IN p_urgp smallint unsigned, IN p_ack tinyint, IN p_psh tinyint,
        IN p_rst tinyint, IN p_syn tinyint, IN p_fin tinyint)
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO tcp (_tcp_id, tcp_sport, tcp_dport, tcp_seq, tcp_ackseq, tcp_window, tcp_urg,
                 tcp_urgp, tcp_ack, tcp_psh, tcp_rst, tcp_syn, tcp_fin)
VALUES (p_id, p_sport, p_dport, p_seq, p_ackseq, p_window, p_urg, p_urgp, p_ack, p_psh,
        p_rst, p_syn, p_fin)

-- @procedure PACKET_ADD_TCP
CREATE PROCEDURE PACKET_ADD_TCP(
        IN p_id bigint unsigned, IN p_sport smallint unsigned, IN p_dport smallint unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO tcp (_tcp_id, tcp_sport, tcp_dport) VALUES (p_id, p_sport, p_dport)

-- @procedure PACKET_ADD_UDP
CREATE PROCEDURE PACKET_ADD_UDP(
        IN p_id bigint unsigned, IN p_sport smallint unsigned, IN p_dport smallint unsigned,
        IN p_len smallint unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO udp (_udp_id, udp_sport, udp_dport, udp_len) VALUES (p_id, p_sport, p_dport, p_len)

-- @procedure PACKET_ADD_SCTP
CREATE PROCEDURE PACKET_ADD_SCTP(
        IN p_id bigint unsigned, IN p_sport smallint unsigned, IN p_dport smallint unsigned,
        IN p_csum int unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO sctp (_sctp_id, sctp_sport, sctp_dport, sctp_csum)
VALUES (p_id, p_sport, p_dport, p_csum)

-- @procedure PACKET_ADD_ICMP
CREATE PROCEDURE PACKET_ADD_ICMP(
        IN p_id bigint unsigned, IN p_type tinyint unsigned, IN p_code tinyint unsigned,
        IN p_echoid smallint unsigned, IN p_echoseq smallint unsigned,
        IN p_gateway int unsigned, IN p_fragmtu smallint unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO icmp (_icmp_id, icmp_type, icmp_code, icmp_echoid, icmp_echoseq, icmp_gateway,
                  icmp_fragmtu)
VALUES (p_id, p_type, p_code, p_echoid, p_echoseq, p_gateway, p_fragmtu)

-- @procedure PACKET_ADD_ICMPV6
CREATE PROCEDURE PACKET_ADD_ICMPV6(
        IN p_id bigint unsigned, IN p_type tinyint unsigned, IN p_code tinyint unsigned,
        IN p_echoid smallint unsigned, IN p_echoseq smallint unsigned, IN p_csum int unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO icmpv6 (_icmpv6_id, icmpv6_type, icmpv6_code, icmpv6_echoid, icmpv6_echoseq,
                    icmpv6_csum)
VALUES (p_id, p_type, p_code, p_echoid, p_echoseq, p_csum)

-- @procedure PACKET_ADD_HARDWARE_HEADER
CREATE PROCEDURE PACKET_ADD_HARDWARE_HEADER(
        IN p_id bigint unsigned, IN p_type int, IN p_header varchar(256))
SQL SECURITY INVOKER MODIFIES SQL DATA
INSERT INTO hwhdr (_hw_id, raw_type, raw_header) VALUES (p_id, p_type, p_header)

-- @function INSERT_OR_SELECT_MAC
-- The id of this (source, destination, ethertype) in `mac`, inserted the first time;
-- compared NULL-safe, so a header without destination is stored once too.
-- @stale SELECT COUNT(*) FROM information_schema.parameters WHERE
-- @stale specific_schema = DATABASE() AND specific_name = 'INSERT_OR_SELECT_MAC'
-- @stale AND ordinal_position = 3 AND dtd_identifier NOT LIKE '%unsigned%'
CREATE FUNCTION INSERT_OR_SELECT_MAC(
        p_saddr varchar(32), p_daddr varchar(32), p_protocol smallint unsigned)
        RETURNS bigint unsigned
SQL SECURITY INVOKER NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
    DECLARE found bigint unsigned DEFAULT NULL;
    SELECT _mac_id INTO found FROM mac
     WHERE mac_saddr <=> p_saddr AND mac_daddr <=> p_daddr AND mac_protocol <=> p_protocol
     LIMIT 1;
    IF found IS NULL THEN
        INSERT INTO mac (mac_saddr, mac_daddr, mac_protocol)
        VALUES (p_saddr, p_daddr, p_protocol);
        SET found = LAST_INSERT_ID();
    END IF;
    RETURN found;
END

-- @function INSERT_PACKET_FULL
-- One packet from the `ulog` view's columns after _id: the IP part into ulog2, the
-- transport header into its protocol's table, the link layer into mac (Ethernet,
-- raw_type 1) or hwhdr.  Argument 55 is the ethertype: unsigned (a database made from
-- ulogd's file has it signed, and refuses IPv6 packets; `db init` replaces it).
-- @stale SELECT COUNT(*) FROM information_schema.parameters WHERE
-- @stale specific_schema = DATABASE() AND specific_name = 'INSERT_PACKET_FULL'
-- @stale AND ordinal_position = 55 AND dtd_identifier NOT LIKE '%unsigned%'
CREATE FUNCTION INSERT_PACKET_FULL(
        p_time_sec int unsigned, p_time_usec int unsigned, p_hook tinyint unsigned,
        p_prefix varchar(32), p_mark int unsigned, p_in varchar(32), p_out varchar(32),
        p_family tinyint unsigned, p_saddr binary(16), p_daddr binary(16),
        p_protocol tinyint unsigned, p_tos tinyint unsigned, p_ttl tinyint unsigned,
        p_totlen smallint unsigned, p_ihl tinyint unsigned, p_csum smallint unsigned,
        p_ipid smallint unsigned, p_fragoff smallint unsigned,
        p6_payloadlen smallint unsigned, p6_priority tinyint unsigned,
        p6_hoplimit tinyint unsigned, p6_flowlabel int, p6_fragoff smallint,
        p6_fragid int unsigned,
        t_sport smallint unsigned, t_dport smallint unsigned, t_seq int unsigned,
        t_ackseq int unsigned, t_window smallint unsigned, t_urg tinyint,
        t_urgp smallint unsigned, t_ack tinyint, t_psh tinyint, t_rst tinyint,
        t_syn tinyint, t_fin tinyint,
        u_sport smallint unsigned, u_dport smallint unsigned, u_len smallint unsigned,
        i_type tinyint unsigned, i_code tinyint unsigned, i_echoid smallint unsigned,
        i_echoseq smallint unsigned, i_gateway int unsigned, i_fragmtu smallint unsigned,
        i6_type tinyint unsigned, i6_code tinyint unsigned, i6_echoid smallint unsigned,
        i6_echoseq smallint unsigned, i6_csum int unsigned,
        h_type int, h_header varchar(256), m_saddr varchar(32), m_daddr varchar(32),
        m_protocol smallint unsigned, p_label tinyint unsigned,
        s_sport smallint unsigned, s_dport smallint unsigned, s_csum int unsigned)
        RETURNS bigint unsigned
SQL SECURITY INVOKER NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
    DECLARE pkt bigint unsigned DEFAULT INSERT_IP_PACKET_FULL(
        p_time_sec, p_time_usec, p_hook, p_prefix, p_mark, p_in, p_out, p_family, p_saddr,
        p_daddr, p_protocol, p_tos, p_ttl, p_totlen, p_ihl, p_csum, p_ipid, p_fragoff,
        p6_payloadlen, p6_priority, p6_hoplimit, p6_flowlabel, p6_fragoff, p6_fragid,
        p_label);
    CASE p_protocol
        WHEN 6 THEN CALL PACKET_ADD_TCP_FULL(pkt, t_sport, t_dport, t_seq, t_ackseq,
                                             t_window, t_urg, t_urgp, t_ack, t_psh, t_rst,
                                             t_syn, t_fin);
        WHEN 17 THEN CALL PACKET_ADD_UDP(pkt, u_sport, u_dport, u_len);
        WHEN 132 THEN CALL PACKET_ADD_SCTP(pkt, s_sport, s_dport, s_csum);
        WHEN 1 THEN CALL PACKET_ADD_ICMP(pkt, i_type, i_code, i_echoid, i_echoseq,
                                         i_gateway, i_fragmtu);
        WHEN 58 THEN CALL PACKET_ADD_ICMPV6(pkt, i6_type, i6_code, i6_echoid, i6_echoseq,
                                            i6_csum);
        ELSE BEGIN END;
    END CASE;
    IF h_type = 1 THEN
        UPDATE ulog2 SET mac_id = INSERT_OR_SELECT_MAC(m_saddr, m_daddr, m_protocol)
         WHERE _id = pkt;
    ELSE
        CALL PACKET_ADD_HARDWARE_HEADER(pkt, h_type, h_header);
    END IF;
    RETURN pkt;
END

-- @function INSERT_NFACCT
-- One NFACCT reading (stack NFACCT, MYSQL with table="nfacct").
CREATE FUNCTION INSERT_NFACCT(
        p_name varchar(128), p_pkts bigint unsigned, p_bytes bigint unsigned,
        p_time_sec int unsigned, p_time_usec int unsigned) RETURNS bigint unsigned
SQL SECURITY INVOKER NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
    INSERT INTO nfacct (sum_name, sum_pkts, sum_bytes, oob_time_sec, oob_time_usec)
    VALUES (p_name, p_pkts, p_bytes, p_time_sec, p_time_usec);
    RETURN ROW_COUNT();
END

-- @procedure DELETE_PACKET
-- A packet and its protocol rows (protocol rows first: they reference the packet).
CREATE PROCEDURE DELETE_PACKET(IN p_id bigint unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
    DELETE FROM icmp WHERE _icmp_id = p_id;
    DELETE FROM icmpv6 WHERE _icmpv6_id = p_id;
    DELETE FROM tcp WHERE _tcp_id = p_id;
    DELETE FROM udp WHERE _udp_id = p_id;
    DELETE FROM sctp WHERE _sctp_id = p_id;
    DELETE FROM hwhdr WHERE _hw_id = p_id;
    DELETE FROM ulog2 WHERE _id = p_id;
END

-- @procedure COMPRESS_TABLES
-- Removes protocol rows whose packet is gone, Ethernet headers no packet uses, and
-- packets whose protocol row is gone.
CREATE PROCEDURE COMPRESS_TABLES()
SQL SECURITY INVOKER MODIFIES SQL DATA
BEGIN
    DELETE FROM tcp WHERE _tcp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM udp WHERE _udp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM sctp WHERE _sctp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM icmp WHERE _icmp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM icmpv6 WHERE _icmpv6_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM hwhdr WHERE _hw_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM mac WHERE _mac_id NOT IN (SELECT mac_id FROM ulog2 WHERE mac_id IS NOT NULL);
    DELETE FROM ulog2 WHERE ip_protocol = 6 AND _id NOT IN (SELECT _tcp_id FROM tcp);
    DELETE FROM ulog2 WHERE ip_protocol = 17 AND _id NOT IN (SELECT _udp_id FROM udp);
    DELETE FROM ulog2 WHERE ip_protocol = 132 AND _id NOT IN (SELECT _sctp_id FROM sctp);
    DELETE FROM ulog2 WHERE ip_protocol = 1 AND _id NOT IN (SELECT _icmp_id FROM icmp);
    DELETE FROM ulog2 WHERE ip_protocol = 58 AND _id NOT IN (SELECT _icmpv6_id FROM icmpv6);
END

-- Flows ------------------------------------------------------------------------------------

-- One row per conntrack event (INSERT_CT), or per flow (INSERT_OR_REPLACE_CT).  `state`
-- holds the conntrack event for INSERT_OR_REPLACE_CT; ulogd's INSERT_CT leaves it 0.
-- @table ulog2_ct
CREATE TABLE `ulog2_ct` (
    `_ct_id`            bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `oob_family`        tinyint unsigned,
    `orig_ip_saddr`     binary(16),
    `orig_ip_daddr`     binary(16),
    `orig_ip_protocol`  tinyint unsigned,
    `orig_l4_sport`     int,
    `orig_l4_dport`     int,
    `orig_bytes`        bigint DEFAULT 0,
    `orig_packets`      bigint DEFAULT 0,
    `reply_ip_saddr`    binary(16),
    `reply_ip_daddr`    binary(16),
    `reply_ip_protocol` tinyint unsigned,
    `reply_l4_sport`    int,
    `reply_l4_dport`    int,
    `reply_bytes`       bigint DEFAULT 0,
    `reply_packets`     bigint DEFAULT 0,
    `icmp_code`         tinyint,
    `icmp_type`         tinyint,
    `ct_mark`           bigint DEFAULT 0,
    `flow_start_sec`    int DEFAULT 0,
    `flow_start_usec`   int DEFAULT 0,
    `flow_end_sec`      int DEFAULT 0,
    `flow_end_usec`     int DEFAULT 0,
    `state`             tinyint unsigned DEFAULT 0
) ENGINE=InnoDB COMMENT='conntrack events and flows';


-- @view conntrack
-- The flow stack's argument list for ulogd's INSERT_CT (stack NFCT, IP2BIN, MYSQL).
-- ulogd's own view shows only rows whose `state` is not 0, which hides every row
-- INSERT_CT writes; this one shows them all (MYSQL reads only its column names).
CREATE SQL SECURITY INVOKER VIEW `conntrack` AS
    SELECT _ct_id, oob_family,
           orig_ip_saddr AS orig_ip_saddr_bin, orig_ip_daddr AS orig_ip_daddr_bin,
           orig_ip_protocol, orig_l4_sport, orig_l4_dport,
           orig_bytes AS orig_raw_pktlen, orig_packets AS orig_raw_pktcount,
           reply_ip_saddr AS reply_ip_saddr_bin, reply_ip_daddr AS reply_ip_daddr_bin,
           reply_ip_protocol, reply_l4_sport, reply_l4_dport,
           reply_bytes AS reply_raw_pktlen, reply_packets AS reply_raw_pktcount,
           icmp_code, icmp_type, ct_mark,
           flow_start_sec, flow_start_usec, flow_end_sec, flow_end_usec
    FROM ulog2_ct;

-- @function INSERT_CT
-- One conntrack event as a row of ulog2_ct (the `conntrack` view's columns after the id).
CREATE FUNCTION INSERT_CT(
        p_family bigint, o_saddr binary(16), o_daddr binary(16), o_protocol tinyint unsigned,
        o_sport int, o_dport int, o_bytes bigint, o_packets bigint,
        r_saddr binary(16), r_daddr binary(16), r_protocol tinyint unsigned,
        r_sport int, r_dport int, r_bytes bigint, r_packets bigint,
        p_icmp_code tinyint, p_icmp_type tinyint, p_mark bigint,
        p_start_sec int, p_start_usec int, p_end_sec int, p_end_usec int)
        RETURNS bigint unsigned
SQL SECURITY INVOKER NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
    INSERT INTO ulog2_ct (oob_family, orig_ip_saddr, orig_ip_daddr, orig_ip_protocol,
                          orig_l4_sport, orig_l4_dport, orig_bytes, orig_packets,
                          reply_ip_saddr, reply_ip_daddr, reply_ip_protocol, reply_l4_sport,
                          reply_l4_dport, reply_bytes, reply_packets, icmp_code, icmp_type,
                          ct_mark, flow_start_sec, flow_start_usec, flow_end_sec,
                          flow_end_usec)
    VALUES (p_family, o_saddr, o_daddr, o_protocol, o_sport, o_dport, o_bytes, o_packets,
            r_saddr, r_daddr, r_protocol, r_sport, r_dport, r_bytes, r_packets,
            p_icmp_code, p_icmp_type, p_mark, p_start_sec, p_start_usec, p_end_sec,
            p_end_usec);
    RETURN LAST_INSERT_ID();
END

-- @procedure DELETE_CT_FLOW
CREATE PROCEDURE DELETE_CT_FLOW(IN p_id bigint unsigned)
SQL SECURITY INVOKER MODIFIES SQL DATA
DELETE FROM ulog2_ct WHERE _ct_id = p_id

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
