-- ulogpy's PostgreSQL schema: the tables, views and functions ulogd 2.0.8's PGSQL stacks
-- write to (format version 6), plus the indexes a NAT lookup needs.
--
-- Applied by `ulogpy db init`, one object at a time: each `-- @kind name [table]` block
-- runs only when that object is missing from the target schema, so an existing ulogd
-- database keeps its data and objects and only gets what it lacks.  Names are unqualified:
-- `db init` sets search_path to the target schema first.

-- @table _format
CREATE TABLE _format (version integer);
INSERT INTO _format (version) VALUES (6);

-- @table _extensions
CREATE TABLE _extensions (
    ext_id     serial PRIMARY KEY,
    ext_name   varchar(64) NOT NULL,
    table_name varchar(64) NOT NULL,
    join_name  varchar(64) NOT NULL
);

-- @sequence ulog2__id_seq
CREATE SEQUENCE ulog2__id_seq;

-- @table ulog2
-- One row per logged packet; the protocol tables below hang off its _id.
CREATE TABLE ulog2 (
    _id            bigint PRIMARY KEY DEFAULT nextval('ulog2__id_seq'),
    oob_time_sec   integer,
    oob_time_usec  integer,
    oob_hook       smallint,
    oob_prefix     varchar(32),
    oob_mark       integer,
    oob_in         varchar(32),
    oob_out        varchar(32),
    oob_family     smallint,
    ip_saddr_str   inet,
    ip_daddr_str   inet,
    ip_protocol    smallint,
    ip_tos         smallint,
    ip_ttl         smallint,
    ip_totlen      smallint,
    ip_ihl         smallint,
    ip_csum        integer,
    ip_id          integer,
    ip_fragoff     smallint,
    ip6_payloadlen bigint,
    ip6_priority   smallint,
    ip6_hoplimit   smallint,
    ip6_flowlabel  bigint,
    ip6_fragoff    integer,
    ip6_fragid     bigint,
    label          smallint,
    mac_id         bigint,
    "timestamp"    timestamp NOT NULL DEFAULT now()
);
ALTER SEQUENCE ulog2__id_seq OWNED BY ulog2._id;

-- @index ulog2_oob_family ulog2
CREATE INDEX ulog2_oob_family ON ulog2 (oob_family);
-- @index ulog2_ip_saddr ulog2
CREATE INDEX ulog2_ip_saddr ON ulog2 (ip_saddr_str);
-- @index ulog2_ip_daddr ulog2
CREATE INDEX ulog2_ip_daddr ON ulog2 (ip_daddr_str);
-- @index ulog2_timestamp ulog2
CREATE INDEX ulog2_timestamp ON ulog2 ("timestamp");

-- @sequence mac__id_seq
CREATE SEQUENCE mac__id_seq;

-- @table mac
-- Hardware addresses, each (source, destination, protocol) stored once.
CREATE TABLE mac (
    _mac_id      bigint PRIMARY KEY DEFAULT nextval('mac__id_seq'),
    mac_saddr    macaddr NOT NULL,
    mac_daddr    macaddr,
    mac_protocol integer
);
ALTER SEQUENCE mac__id_seq OWNED BY mac._mac_id;

-- @index mac_saddr mac
CREATE INDEX mac_saddr ON mac (mac_saddr);
-- @index mac_daddr mac
CREATE INDEX mac_daddr ON mac (mac_daddr);
-- @index unique_mac mac
CREATE UNIQUE INDEX unique_mac ON mac (mac_saddr, mac_daddr, mac_protocol);

-- @table hwhdr
-- The link-layer header of packets that did not come from Ethernet.
CREATE TABLE hwhdr (
    _hw_id     bigint PRIMARY KEY,
    raw_type   integer,
    raw_header varchar(256)
);
-- @index raw_type hwhdr
CREATE INDEX raw_type ON hwhdr (raw_type);
-- @index raw_header hwhdr
CREATE INDEX raw_header ON hwhdr (raw_header);

-- @table tcp
CREATE TABLE tcp (
    _tcp_id    bigint PRIMARY KEY,
    tcp_sport  integer,
    tcp_dport  integer,
    tcp_seq    bigint,
    tcp_ackseq bigint,
    tcp_window integer,
    tcp_urg    boolean,
    tcp_urgp   integer,
    tcp_ack    boolean,
    tcp_psh    boolean,
    tcp_rst    boolean,
    tcp_syn    boolean,
    tcp_fin    boolean
);
-- @index tcp_sport tcp
CREATE INDEX tcp_sport ON tcp (tcp_sport);
-- @index tcp_dport tcp
CREATE INDEX tcp_dport ON tcp (tcp_dport);

-- @table udp
CREATE TABLE udp (
    _udp_id   bigint PRIMARY KEY,
    udp_sport integer,
    udp_dport integer,
    udp_len   smallint
);
-- @index udp_sport udp
CREATE INDEX udp_sport ON udp (udp_sport);
-- @index udp_dport udp
CREATE INDEX udp_dport ON udp (udp_dport);

-- @table sctp
CREATE TABLE sctp (
    _sctp_id   bigint PRIMARY KEY,
    sctp_sport integer,
    sctp_dport integer,
    sctp_csum  smallint
);
-- @index sctp_sport sctp
CREATE INDEX sctp_sport ON sctp (sctp_sport);
-- @index sctp_dport sctp
CREATE INDEX sctp_dport ON sctp (sctp_dport);

-- @table icmp
CREATE TABLE icmp (
    _icmp_id     bigint PRIMARY KEY,
    icmp_type    smallint,
    icmp_code    smallint,
    icmp_echoid  integer,
    icmp_echoseq integer,
    icmp_gateway integer,
    icmp_fragmtu smallint
);

-- @table icmpv6
CREATE TABLE icmpv6 (
    _icmpv6_id     bigint PRIMARY KEY,
    icmpv6_type    smallint,
    icmpv6_code    smallint,
    icmpv6_echoid  integer,
    icmpv6_echoseq integer,
    icmpv6_csum    integer
);

-- @table nfacct
CREATE TABLE nfacct (
    sum_name      varchar(128),
    sum_pkts      integer DEFAULT 0,
    sum_bytes     integer DEFAULT 0,
    oob_time_sec  integer,
    oob_time_usec integer
);
-- @index unique_acct nfacct
CREATE UNIQUE INDEX unique_acct ON nfacct (sum_name, oob_time_sec, oob_time_usec);

-- @sequence ulog2_ct__ct_id_seq
CREATE SEQUENCE ulog2_ct__ct_id_seq;

-- @table ulog2_ct
-- One row per conntrack event, or per flow with INSERT_OR_REPLACE_CT.  The column order
-- is the argument order of INSERT_CT and INSERT_OR_REPLACE_CT (the first column is the
-- id, which PGSQL skips).
CREATE TABLE ulog2_ct (
    _ct_id             bigint PRIMARY KEY DEFAULT nextval('ulog2_ct__ct_id_seq'),
    oob_family         smallint,
    orig_ip_saddr_str  inet,
    orig_ip_daddr_str  inet,
    orig_ip_protocol   smallint,
    orig_l4_sport      integer,
    orig_l4_dport      integer,
    orig_raw_pktlen    bigint DEFAULT 0,
    orig_raw_pktcount  bigint DEFAULT 0,
    reply_ip_saddr_str inet,
    reply_ip_daddr_str inet,
    reply_ip_protocol  smallint,
    reply_l4_sport     integer,
    reply_l4_dport     integer,
    reply_raw_pktlen   bigint DEFAULT 0,
    reply_raw_pktcount bigint DEFAULT 0,
    icmp_code          smallint,
    icmp_type          smallint,
    ct_mark            bigint DEFAULT 0,
    flow_start_sec     bigint DEFAULT 0,
    flow_start_usec    bigint DEFAULT 0,
    flow_end_sec       bigint DEFAULT 0,
    flow_end_usec      bigint DEFAULT 0,
    ct_event           smallint DEFAULT 0
);
ALTER SEQUENCE ulog2_ct__ct_id_seq OWNED BY ulog2_ct._ct_id;

-- @index ulog2_ct_oob_family ulog2_ct
CREATE INDEX ulog2_ct_oob_family ON ulog2_ct (oob_family);
-- @index ulog2_ct_orig_ip_saddr ulog2_ct
CREATE INDEX ulog2_ct_orig_ip_saddr ON ulog2_ct (orig_ip_saddr_str);
-- @index ulog2_ct_orig_ip_daddr ulog2_ct
CREATE INDEX ulog2_ct_orig_ip_daddr ON ulog2_ct (orig_ip_daddr_str);
-- @index ulog2_ct_reply_ip_saddr ulog2_ct
CREATE INDEX ulog2_ct_reply_ip_saddr ON ulog2_ct (reply_ip_saddr_str);
-- @index ulog2_ct_reply_ip_daddr ulog2_ct
CREATE INDEX ulog2_ct_reply_ip_daddr ON ulog2_ct (reply_ip_daddr_str);
-- @index ulog2_ct_orig_l4_sport ulog2_ct
CREATE INDEX ulog2_ct_orig_l4_sport ON ulog2_ct (orig_l4_sport);
-- @index ulog2_ct_orig_l4_dport ulog2_ct
CREATE INDEX ulog2_ct_orig_l4_dport ON ulog2_ct (orig_l4_dport);
-- @index ulog2_ct_reply_l4_sport ulog2_ct
CREATE INDEX ulog2_ct_reply_l4_sport ON ulog2_ct (reply_l4_sport);
-- @index ulog2_ct_reply_l4_dport ulog2_ct
CREATE INDEX ulog2_ct_reply_l4_dport ON ulog2_ct (reply_l4_dport);
-- @index ulog2_ct_event ulog2_ct
CREATE INDEX ulog2_ct_event ON ulog2_ct (ct_event);

-- ulogpy: "who had public ip:port at time t" — after masquerading, the public address and
-- port are the reply direction's destination; then narrow by the flow's lifetime.
-- @index ulog2_ct_nat_lookup ulog2_ct
CREATE INDEX ulog2_ct_nat_lookup
    ON ulog2_ct (reply_ip_daddr_str, reply_l4_dport, flow_start_sec);
-- @index ulog2_ct_flow_start ulog2_ct
CREATE INDEX ulog2_ct_flow_start ON ulog2_ct (flow_start_sec);
-- @index ulog2_ct_flow_end ulog2_ct
CREATE INDEX ulog2_ct_flow_end ON ulog2_ct (flow_end_sec);

-- @table ip_proto
CREATE TABLE ip_proto (
    _proto_id  serial PRIMARY KEY,
    proto_name varchar(16),
    proto_desc varchar(255)
);
INSERT INTO ip_proto (_proto_id, proto_name, proto_desc) VALUES
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
CREATE TABLE nufw (
    _nufw_id   bigint PRIMARY KEY,
    username   varchar(30),
    user_id    integer,
    client_os  varchar(100),
    client_app varchar(256)
);
INSERT INTO _extensions (ext_name, table_name, join_name) VALUES ('nufw', 'nufw', '_nufw_id');
-- @index nufw_user_id nufw
CREATE INDEX nufw_user_id ON nufw (user_id);

-- @constraint nufw_id_fk nufw
ALTER TABLE nufw ADD CONSTRAINT nufw_id_fk FOREIGN KEY (_nufw_id) REFERENCES ulog2 (_id);
-- @constraint tcp_id_fk tcp
ALTER TABLE tcp ADD CONSTRAINT tcp_id_fk FOREIGN KEY (_tcp_id) REFERENCES ulog2 (_id);
-- @constraint udp_id_fk udp
ALTER TABLE udp ADD CONSTRAINT udp_id_fk FOREIGN KEY (_udp_id) REFERENCES ulog2 (_id);
-- @constraint sctp_id_fk sctp
ALTER TABLE sctp ADD CONSTRAINT sctp_id_fk FOREIGN KEY (_sctp_id) REFERENCES ulog2 (_id);
-- @constraint icmp_id_fk icmp
ALTER TABLE icmp ADD CONSTRAINT icmp_id_fk FOREIGN KEY (_icmp_id) REFERENCES ulog2 (_id);
-- @constraint icmpv6_id_fk icmpv6
ALTER TABLE icmpv6 ADD CONSTRAINT icmpv6_id_fk
    FOREIGN KEY (_icmpv6_id) REFERENCES ulog2 (_id);
-- @constraint mac_id_fk ulog2
ALTER TABLE ulog2 ADD CONSTRAINT mac_id_fk FOREIGN KEY (mac_id) REFERENCES mac (_mac_id);

-- @view view_tcp
CREATE VIEW view_tcp AS SELECT * FROM ulog2 JOIN tcp ON ulog2._id = tcp._tcp_id;
-- @view view_udp
CREATE VIEW view_udp AS SELECT * FROM ulog2 JOIN udp ON ulog2._id = udp._udp_id;
-- @view view_icmp
CREATE VIEW view_icmp AS SELECT * FROM ulog2 JOIN icmp ON ulog2._id = icmp._icmp_id;
-- @view view_icmpv6
CREATE VIEW view_icmpv6 AS
    SELECT * FROM ulog2 JOIN icmpv6 ON ulog2._id = icmpv6._icmpv6_id;
-- @view view_nufw
CREATE VIEW view_nufw AS SELECT * FROM ulog2 JOIN nufw ON ulog2._id = nufw._nufw_id;
-- @view view_tcp_quad
CREATE VIEW view_tcp_quad AS
    SELECT ulog2._id, ulog2.ip_saddr_str, tcp.tcp_sport, ulog2.ip_daddr_str, tcp.tcp_dport
    FROM ulog2 JOIN tcp ON ulog2._id = tcp._tcp_id;
-- @view view_udp_quad
CREATE VIEW view_udp_quad AS
    SELECT ulog2._id, ulog2.ip_saddr_str, udp.udp_sport, ulog2.ip_daddr_str, udp.udp_dport
    FROM ulog2 JOIN udp ON ulog2._id = udp._udp_id;

-- @view ulog
-- The packet stack's argument list: PGSQL reads these column names (as keys) in order and
-- calls INSERT_PACKET_FULL with the values.  Aliases turn table columns into key names.
CREATE VIEW ulog AS
    SELECT _id, oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, oob_in, oob_out,
           oob_family, ip_saddr_str, ip_daddr_str, ip_protocol, ip_tos, ip_ttl, ip_totlen,
           ip_ihl, ip_csum, ip_id, ip_fragoff, ip6_payloadlen, ip6_priority, ip6_hoplimit,
           ip6_flowlabel, ip6_fragoff, ip6_fragid,
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
    LEFT JOIN sctp ON sctp._sctp_id = ulog2._id
    LEFT JOIN icmp ON icmp._icmp_id = ulog2._id
    LEFT JOIN mac ON mac._mac_id = ulog2.mac_id
    LEFT JOIN hwhdr ON hwhdr._hw_id = ulog2._id
    LEFT JOIN icmpv6 ON icmpv6._icmpv6_id = ulog2._id;

-- @function ulog2_drop_foreign_keys
CREATE FUNCTION ulog2_drop_foreign_keys() RETURNS void LANGUAGE sql AS $body$
    ALTER TABLE ulog2 DROP CONSTRAINT mac_id_fk;
    ALTER TABLE icmpv6 DROP CONSTRAINT icmpv6_id_fk;
    ALTER TABLE icmp DROP CONSTRAINT icmp_id_fk;
    ALTER TABLE udp DROP CONSTRAINT udp_id_fk;
    ALTER TABLE tcp DROP CONSTRAINT tcp_id_fk;
$body$;

-- @function ulog2_add_foreign_keys
CREATE FUNCTION ulog2_add_foreign_keys() RETURNS void LANGUAGE sql AS $body$
    ALTER TABLE tcp ADD CONSTRAINT tcp_id_fk FOREIGN KEY (_tcp_id) REFERENCES ulog2 (_id);
    ALTER TABLE udp ADD CONSTRAINT udp_id_fk FOREIGN KEY (_udp_id) REFERENCES ulog2 (_id);
    ALTER TABLE sctp ADD CONSTRAINT sctp_id_fk FOREIGN KEY (_sctp_id) REFERENCES ulog2 (_id);
    ALTER TABLE icmp ADD CONSTRAINT icmp_id_fk FOREIGN KEY (_icmp_id) REFERENCES ulog2 (_id);
    ALTER TABLE icmpv6 ADD CONSTRAINT icmpv6_id_fk
        FOREIGN KEY (_icmpv6_id) REFERENCES ulog2 (_id);
    ALTER TABLE ulog2 ADD CONSTRAINT mac_id_fk FOREIGN KEY (mac_id) REFERENCES mac (_mac_id);
$body$;

-- @function insert_ip_packet
CREATE FUNCTION insert_ip_packet(
    p_time_sec integer, p_time_usec integer, p_prefix varchar(32), p_mark integer,
    p_in varchar(32), p_out varchar(32), p_family integer, p_saddr inet, p_daddr inet,
    p_protocol integer
) RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO ulog2 (oob_time_sec, oob_time_usec, oob_prefix, oob_mark, oob_in, oob_out,
                       oob_family, ip_saddr_str, ip_daddr_str, ip_protocol)
    VALUES (p_time_sec, p_time_usec, p_prefix, p_mark, p_in, p_out, p_family, p_saddr,
            p_daddr, p_protocol)
    RETURNING _id;
$body$;

-- @function insert_ip_packet_full
CREATE FUNCTION insert_ip_packet_full(
    p_time_sec integer, p_time_usec integer, p_hook integer, p_prefix varchar(32),
    p_mark integer, p_in varchar(32), p_out varchar(32), p_family integer,
    p_saddr inet, p_daddr inet, p_protocol integer, p_tos integer, p_ttl integer,
    p_totlen integer, p_ihl integer, p_csum integer, p_id integer, p_fragoff integer,
    p6_payloadlen integer, p6_priority integer, p6_hoplimit integer, p6_flowlabel bigint,
    p6_fragoff integer, p6_fragid bigint, p_label integer
) RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO ulog2 (oob_time_sec, oob_time_usec, oob_hook, oob_prefix, oob_mark, oob_in,
                       oob_out, oob_family, ip_saddr_str, ip_daddr_str, ip_protocol, ip_tos,
                       ip_ttl, ip_totlen, ip_ihl, ip_csum, ip_id, ip_fragoff, ip6_payloadlen,
                       ip6_priority, ip6_hoplimit, ip6_flowlabel, ip6_fragoff, ip6_fragid,
                       label)
    VALUES (p_time_sec, p_time_usec, p_hook, p_prefix, p_mark, p_in, p_out, p_family,
            p_saddr, p_daddr, p_protocol, p_tos, p_ttl, p_totlen, p_ihl, p_csum, p_id,
            p_fragoff, p6_payloadlen, p6_priority, p6_hoplimit, p6_flowlabel, p6_fragoff,
            p6_fragid, p_label)
    RETURNING _id;
$body$;

-- @function insert_tcp_full
CREATE FUNCTION insert_tcp_full(
    p_id bigint, p_sport integer, p_dport integer, p_seq bigint, p_ackseq bigint,
    p_window integer, p_urg boolean, p_urgp integer, p_ack boolean, p_psh boolean,
    p_rst boolean, p_syn boolean, p_fin boolean
) RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO tcp (_tcp_id, tcp_sport, tcp_dport, tcp_seq, tcp_ackseq, tcp_window, tcp_urg,
                     tcp_urgp, tcp_ack, tcp_psh, tcp_rst, tcp_syn, tcp_fin)
    VALUES (p_id, p_sport, p_dport, p_seq, p_ackseq, p_window, p_urg, p_urgp, p_ack, p_psh,
            p_rst, p_syn, p_fin)
    RETURNING _tcp_id;
$body$;

-- @function insert_udp
CREATE FUNCTION insert_udp(p_id bigint, p_sport integer, p_dport integer, p_len integer)
RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO udp (_udp_id, udp_sport, udp_dport, udp_len)
    VALUES (p_id, p_sport, p_dport, p_len) RETURNING _udp_id;
$body$;

-- @function insert_sctp
CREATE FUNCTION insert_sctp(p_id bigint, p_sport integer, p_dport integer, p_csum integer)
RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO sctp (_sctp_id, sctp_sport, sctp_dport, sctp_csum)
    VALUES (p_id, p_sport, p_dport, p_csum) RETURNING _sctp_id;
$body$;

-- @function insert_icmp
CREATE FUNCTION insert_icmp(
    p_id bigint, p_type integer, p_code integer, p_echoid integer, p_echoseq integer,
    p_gateway integer, p_fragmtu integer
) RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO icmp (_icmp_id, icmp_type, icmp_code, icmp_echoid, icmp_echoseq, icmp_gateway,
                      icmp_fragmtu)
    VALUES (p_id, p_type, p_code, p_echoid, p_echoseq, p_gateway, p_fragmtu)
    RETURNING _icmp_id;
$body$;

-- @function insert_icmpv6
CREATE FUNCTION insert_icmpv6(
    p_id bigint, p_type integer, p_code integer, p_echoid integer, p_echoseq integer,
    p_csum integer
) RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO icmpv6 (_icmpv6_id, icmpv6_type, icmpv6_code, icmpv6_echoid, icmpv6_echoseq,
                        icmpv6_csum)
    VALUES (p_id, p_type, p_code, p_echoid, p_echoseq, p_csum) RETURNING _icmpv6_id;
$body$;

-- @function insert_hardware_header
CREATE FUNCTION insert_hardware_header(p_id bigint, p_type integer, p_header varchar(256))
RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO hwhdr (_hw_id, raw_type, raw_header) VALUES (p_id, p_type, p_header)
    RETURNING _hw_id;
$body$;

-- @function insert_or_select_mac
-- The id of this (source, destination, protocol) in `mac`, inserting it the first time.
CREATE FUNCTION insert_or_select_mac(p_saddr macaddr, p_daddr macaddr, p_protocol integer)
RETURNS bigint LANGUAGE plpgsql AS $body$
DECLARE
    found_id bigint;
BEGIN
    SELECT _mac_id INTO found_id FROM mac
     WHERE mac_saddr = p_saddr AND mac_protocol = p_protocol
       AND (mac_daddr = p_daddr OR (p_daddr IS NULL AND mac_daddr IS NULL));
    IF found_id IS NULL THEN
        INSERT INTO mac (mac_saddr, mac_daddr, mac_protocol)
        VALUES (p_saddr, p_daddr, p_protocol) RETURNING _mac_id INTO found_id;
    END IF;
    RETURN found_id;
END
$body$;

-- @function insert_packet_full
-- One packet from the `ulog` view's 59 columns: the IP part into ulog2, the transport
-- header into its protocol's table, the link layer into mac (Ethernet) or hwhdr.
CREATE FUNCTION insert_packet_full(
    p_time_sec integer, p_time_usec integer, p_hook integer, p_prefix varchar(32),
    p_mark integer, p_in varchar(32), p_out varchar(32), p_family integer,
    p_saddr inet, p_daddr inet, p_protocol integer, p_tos integer, p_ttl integer,
    p_totlen integer, p_ihl integer, p_csum integer, p_ipid integer, p_fragoff integer,
    p6_payloadlen integer, p6_priority integer, p6_hoplimit integer, p6_flowlabel bigint,
    p6_fragoff integer, p6_fragid bigint,
    t_sport integer, t_dport integer, t_seq bigint, t_ackseq bigint, t_window integer,
    t_urg boolean, t_urgp integer, t_ack boolean, t_psh boolean, t_rst boolean,
    t_syn boolean, t_fin boolean,
    u_sport integer, u_dport integer, u_len integer,
    i_type integer, i_code integer, i_echoid integer, i_echoseq integer, i_gateway integer,
    i_fragmtu integer,
    i6_type integer, i6_code integer, i6_echoid integer, i6_echoseq integer, i6_csum integer,
    h_type integer, h_header varchar(256), m_saddr varchar(32), m_daddr varchar(32),
    m_protocol integer, p_label integer,
    s_sport integer, s_dport integer, s_csum integer
) RETURNS bigint LANGUAGE plpgsql AS $body$
DECLARE
    pkt bigint;
BEGIN
    pkt := insert_ip_packet_full(p_time_sec, p_time_usec, p_hook, p_prefix, p_mark, p_in,
                                 p_out, p_family, p_saddr, p_daddr, p_protocol, p_tos, p_ttl,
                                 p_totlen, p_ihl, p_csum, p_ipid, p_fragoff, p6_payloadlen,
                                 p6_priority, p6_hoplimit, p6_flowlabel, p6_fragoff,
                                 p6_fragid, p_label);
    CASE p_protocol
        WHEN 6 THEN
            PERFORM insert_tcp_full(pkt, t_sport, t_dport, t_seq, t_ackseq, t_window, t_urg,
                                    t_urgp, t_ack, t_psh, t_rst, t_syn, t_fin);
        WHEN 17 THEN
            PERFORM insert_udp(pkt, u_sport, u_dport, u_len);
        WHEN 132 THEN
            PERFORM insert_sctp(pkt, s_sport, s_dport, s_csum);
        WHEN 1 THEN
            PERFORM insert_icmp(pkt, i_type, i_code, i_echoid, i_echoseq, i_gateway,
                                i_fragmtu);
        WHEN 58 THEN
            PERFORM insert_icmpv6(pkt, i6_type, i6_code, i6_echoid, i6_echoseq, i6_csum);
        ELSE
            NULL;
    END CASE;
    IF h_type = 1 THEN
        UPDATE ulog2
           SET mac_id = insert_or_select_mac(m_saddr::macaddr, m_daddr::macaddr, m_protocol)
         WHERE _id = pkt;
    ELSE
        PERFORM insert_hardware_header(pkt, h_type, h_header);
    END IF;
    RETURN pkt;
END
$body$;

-- @function insert_ct
-- One conntrack event as a row of ulog2_ct; returns its id.
CREATE FUNCTION insert_ct(
    p_family integer, o_saddr inet, o_daddr inet, o_protocol integer, o_sport integer,
    o_dport integer, o_pktlen bigint, o_pktcount bigint, r_saddr inet, r_daddr inet,
    r_protocol integer, r_sport integer, r_dport integer, r_pktlen bigint,
    r_pktcount bigint, p_icmp_code integer, p_icmp_type integer, p_mark bigint,
    p_start_sec bigint, p_start_usec bigint, p_end_sec bigint, p_end_usec bigint,
    p_event integer
) RETURNS bigint LANGUAGE sql AS $body$
    INSERT INTO ulog2_ct (oob_family, orig_ip_saddr_str, orig_ip_daddr_str, orig_ip_protocol,
                          orig_l4_sport, orig_l4_dport, orig_raw_pktlen, orig_raw_pktcount,
                          reply_ip_saddr_str, reply_ip_daddr_str, reply_ip_protocol,
                          reply_l4_sport, reply_l4_dport, reply_raw_pktlen,
                          reply_raw_pktcount, icmp_code, icmp_type, ct_mark, flow_start_sec,
                          flow_start_usec, flow_end_sec, flow_end_usec, ct_event)
    VALUES (p_family, o_saddr, o_daddr, o_protocol, o_sport, o_dport, o_pktlen, o_pktcount,
            r_saddr, r_daddr, r_protocol, r_sport, r_dport, r_pktlen, r_pktcount,
            p_icmp_code, p_icmp_type, p_mark, p_start_sec, p_start_usec, p_end_sec,
            p_end_usec, p_event)
    RETURNING _ct_id;
$body$;

-- @function insert_or_replace_ct
-- NEW (and any event but DESTROY) inserts a row; DESTROY (event 4) completes the open
-- rows of the same flow (same family, addresses, protocols, and ICMP type/code or ports)
-- with the counters, mark, end time and event, leaving the start untouched; it returns
-- NULL then, and changes nothing when no open row matches.
CREATE FUNCTION insert_or_replace_ct(
    p_family integer, o_saddr inet, o_daddr inet, o_protocol integer, o_sport integer,
    o_dport integer, o_pktlen bigint, o_pktcount bigint, r_saddr inet, r_daddr inet,
    r_protocol integer, r_sport integer, r_dport integer, r_pktlen bigint,
    r_pktcount bigint, p_icmp_code integer, p_icmp_type integer, p_mark bigint,
    p_start_sec bigint, p_start_usec bigint, p_end_sec bigint, p_end_usec bigint,
    p_event integer
) RETURNS bigint LANGUAGE plpgsql AS $body$
BEGIN
    IF p_event IS DISTINCT FROM 4 THEN
        RETURN insert_ct(p_family, o_saddr, o_daddr, o_protocol, o_sport, o_dport, o_pktlen,
                         o_pktcount, r_saddr, r_daddr, r_protocol, r_sport, r_dport,
                         r_pktlen, r_pktcount, p_icmp_code, p_icmp_type, p_mark,
                         p_start_sec, p_start_usec, p_end_sec, p_end_usec, p_event);
    END IF;
    UPDATE ulog2_ct AS f
       SET orig_raw_pktlen = o_pktlen, orig_raw_pktcount = o_pktcount,
           reply_raw_pktlen = r_pktlen, reply_raw_pktcount = r_pktcount,
           ct_mark = p_mark, flow_end_sec = p_end_sec, flow_end_usec = p_end_usec,
           ct_event = p_event
     WHERE f.oob_family = p_family
       AND f.orig_ip_saddr_str = o_saddr AND f.orig_ip_daddr_str = o_daddr
       AND f.orig_ip_protocol = o_protocol
       AND f.reply_ip_saddr_str = r_saddr AND f.reply_ip_daddr_str = r_daddr
       AND f.reply_ip_protocol = r_protocol
       AND CASE WHEN o_protocol = 1
                THEN f.icmp_code = p_icmp_code AND f.icmp_type = p_icmp_type
                ELSE f.orig_l4_sport = o_sport AND f.orig_l4_dport = o_dport
                     AND f.reply_l4_sport = r_sport AND f.reply_l4_dport = r_dport
           END
       AND f.ct_event < 4;
    RETURN NULL;
END
$body$;

-- @function insert_nfacct
CREATE FUNCTION insert_nfacct(p_name varchar(128), p_pkts integer, p_bytes integer,
                              p_time_sec integer, p_time_usec integer)
RETURNS void LANGUAGE sql AS $body$
    INSERT INTO nfacct (sum_name, sum_pkts, sum_bytes, oob_time_sec, oob_time_usec)
    VALUES (p_name, p_pkts, p_bytes, p_time_sec, p_time_usec);
$body$;

-- @function delete_packet
CREATE FUNCTION delete_packet(p_id bigint) RETURNS void LANGUAGE sql AS $body$
    DELETE FROM icmp WHERE _icmp_id = p_id;
    DELETE FROM tcp WHERE _tcp_id = p_id;
    DELETE FROM udp WHERE _udp_id = p_id;
    DELETE FROM sctp WHERE _sctp_id = p_id;
    DELETE FROM ulog2 WHERE _id = p_id;
$body$;

-- @function delete_ct_flow
CREATE FUNCTION delete_ct_flow(p_id bigint) RETURNS void LANGUAGE sql AS $body$
    DELETE FROM ulog2_ct WHERE _ct_id = p_id;
$body$;

-- @function compress_tables
-- Removes protocol rows whose packet is gone, and packets whose protocol row is gone.
CREATE FUNCTION compress_tables() RETURNS void LANGUAGE sql AS $body$
    DELETE FROM tcp WHERE _tcp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM mac WHERE _mac_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM udp WHERE _udp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM sctp WHERE _sctp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM icmp WHERE _icmp_id NOT IN (SELECT _id FROM ulog2);
    DELETE FROM ulog2 WHERE ip_protocol = 6 AND _id NOT IN (SELECT _tcp_id FROM tcp);
    DELETE FROM ulog2 WHERE ip_protocol = 17 AND _id NOT IN (SELECT _udp_id FROM udp);
    DELETE FROM ulog2 WHERE ip_protocol = 132 AND _id NOT IN (SELECT _sctp_id FROM sctp);
    DELETE FROM ulog2 WHERE ip_protocol = 2 AND _id NOT IN (SELECT _icmp_id FROM icmp);
$body$;
