-- Wireshark / tshark dissector for the RFC 8885 (DMM over PMIPv6) mobility options 65-70.
--
-- Wireshark 4.0's MIPv6 dissector does not know these options: it shows them as "Unknown" (with a
-- wrong "Length" line). This plugin registers each type in the "mip6.option" dissector table, so
-- it decodes them wherever the MIPv6 dissector runs: raw IPv6 (next header 135) and UDP 5436.
-- The MIPv6 dissector hands each option over with its type and length bytes, and has already
-- checked that the option fits within the Mobility Header.
--
-- Layouts (RFC 8885 §4; body lengths exclude the type and length bytes):
--   65 Anchored Prefix          18  reserved(1), prefix length(1), prefix(16)
--   66 Local Prefix             18  reserved(1), prefix length(1), prefix(16)
--   67 Previous MAAR            34  reserved(1), prefix length(1), P-MAAR address(16), HNP(16)
--   68 Serving MAAR             16  S-MAAR address(16)
--   69 DLIF Link-Local Address  16  link-local address(16)
--   70 DLIF Link-Layer Address  >=3 reserved(2), link-layer address (variable)
--
-- Use: tshark -X lua_script:tools/wireshark/rfc8885.lua -r capture.pcap -V
-- or copy this file into Wireshark's personal Lua plugin folder (see docs/wireshark.md).

local OPTIONS = {
    [65] = { name = "Anchored Prefix", length = 18 },
    [66] = { name = "Local Prefix", length = 18 },
    [67] = { name = "Previous MAAR", length = 34 },
    [68] = { name = "Serving MAAR", length = 16 },
    [69] = { name = "DLIF Link-Local Address", length = 16 },
    [70] = { name = "DLIF Link-Layer Address", min_length = 3 },
}

local type_names = {}
for t, o in pairs(OPTIONS) do type_names[t] = o.name end

local proto = Proto("rfc8885", "RFC 8885 DMM Mobility Option")

local f = {
    type = ProtoField.uint8("rfc8885.type", "Mobility Option", base.DEC, type_names),
    length = ProtoField.uint8("rfc8885.length", "Length", base.DEC),
    reserved = ProtoField.uint8("rfc8885.reserved", "Reserved", base.HEX),
    prefix_length = ProtoField.uint8("rfc8885.prefix_length", "Prefix Length", base.DEC),
    anchored_prefix = ProtoField.string("rfc8885.anchored_prefix", "Anchored Prefix"),
    local_prefix = ProtoField.string("rfc8885.local_prefix", "Local Prefix"),
    pmaar_address = ProtoField.ipv6("rfc8885.previous_maar.address", "P-MAAR Address"),
    pmaar_prefix = ProtoField.string("rfc8885.previous_maar.prefix", "Home Network Prefix"),
    serving_maar = ProtoField.ipv6("rfc8885.serving_maar", "S-MAAR Address"),
    dlif_link_local = ProtoField.ipv6("rfc8885.dlif_link_local", "DLIF Link-Local Address"),
    reserved16 = ProtoField.uint16("rfc8885.reserved16", "Reserved", base.HEX),
    dlif_link_layer = ProtoField.bytes("rfc8885.dlif_link_layer", "DLIF Link-Layer Address", base.COLON),
    data = ProtoField.bytes("rfc8885.data", "Option Data"),
}
proto.fields = f

local ei = {
    bad_length = ProtoExpert.new("rfc8885.bad_length", "Wrong option length",
                                 expert.group.MALFORMED, expert.severity.ERROR),
    bad_prefix_length = ProtoExpert.new("rfc8885.bad_prefix_length", "Prefix length above 128",
                                        expert.group.MALFORMED, expert.severity.ERROR),
}
proto.experts = ei

-- IPv6 text as RFC 5952 writes it (lower case, longest run of two or more zero groups as "::"),
-- made here rather than by Address's tostring, which would follow the name resolution settings.
local function ipv6_text(range)
    local g = {}
    for i = 0, 7 do g[i + 1] = range:range(i * 2, 2):uint() end
    local best, best_len, run, run_len = 0, 0, 0, 0
    for i = 1, 8 do
        if g[i] == 0 then
            if run_len == 0 then run = i end
            run_len = run_len + 1
            if run_len > best_len then best, best_len = run, run_len end
        else
            run_len = 0
        end
    end
    local function hex(from, to)
        local out = {}
        for i = from, to do out[#out + 1] = string.format("%x", g[i]) end
        return table.concat(out, ":")
    end
    if best_len < 2 then return hex(1, 8) end
    return hex(1, best - 1) .. "::" .. hex(best + best_len, 8)
end

-- reserved(1), prefix length(1) at body offset 0 and 1; returns the prefix length.
local function add_reserved_and_length(tree, body, pinfo)
    tree:add(f.reserved, body:range(0, 1))
    local plen = body:range(1, 1):uint()
    local item = tree:add(f.prefix_length, body:range(1, 1))
    if plen > 128 then item:add_proto_expert_info(ei.bad_prefix_length) end
    return plen
end

local function add_prefix(tree, field, range, plen)
    local text = ipv6_text(range) .. "/" .. plen
    tree:add(field, range, text)
    return text
end

local decoders = {}

local function prefix_option(field)
    return function(tree, body, pinfo)
        local plen = add_reserved_and_length(tree, body, pinfo)
        return add_prefix(tree, field, body:range(2, 16), plen)
    end
end
decoders[65] = prefix_option(f.anchored_prefix)
decoders[66] = prefix_option(f.local_prefix)

decoders[67] = function(tree, body, pinfo)
    local plen = add_reserved_and_length(tree, body, pinfo)
    local maar = body:range(2, 16)
    tree:add(f.pmaar_address, maar)
    local prefix = add_prefix(tree, f.pmaar_prefix, body:range(18, 16), plen)
    return ipv6_text(maar) .. ", " .. prefix
end

decoders[68] = function(tree, body)
    tree:add(f.serving_maar, body:range(0, 16))
    return ipv6_text(body:range(0, 16))
end

decoders[69] = function(tree, body)
    tree:add(f.dlif_link_local, body:range(0, 16))
    return ipv6_text(body:range(0, 16))
end

decoders[70] = function(tree, body)
    tree:add(f.reserved16, body:range(0, 2))
    local ll = body:range(2, body:len() - 2)
    tree:add(f.dlif_link_layer, ll)
    local out = {}
    for i = 0, ll:len() - 1 do out[#out + 1] = string.format("%02x", ll:range(i, 1):uint()) end
    return table.concat(out, ":")
end

function proto.dissector(tvb, pinfo, tree)
    local opt = tvb:range(0, 1):uint()
    local info = OPTIONS[opt]
    local len = tvb:range(1, 1):uint()
    local name = "MIPv6 Option - " .. (info and info.name or ("RFC 8885 option " .. opt))
    local subtree = tree:add(proto, tvb:range(0, 2 + len), name)
    subtree:add(f.type, tvb:range(0, 1))
    local len_item = subtree:add(f.length, tvb:range(1, 1))
    if info == nil then
        return 2 + len
    end
    local ok_length = (info.length and len == info.length) or (info.min_length and len >= info.min_length)
    if not ok_length then
        local expected = info.length and tostring(info.length) or ("at least " .. info.min_length)
        len_item:add_proto_expert_info(ei.bad_length,
            string.format("Wrong option length %d for %s (expected %s)", len, info.name, expected))
        if len > 0 then subtree:add(f.data, tvb:range(2, len)) end
        return 2 + len
    end
    local summary = decoders[opt](subtree, tvb:range(2, len), pinfo)
    subtree:append_text(": " .. summary)
    return 2 + len
end

local table_ = DissectorTable.get("mip6.option")
for t in pairs(OPTIONS) do table_:add(t, proto) end
