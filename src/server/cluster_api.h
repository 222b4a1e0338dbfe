// What cluster-aware clients ask (issue 14): CLUSTER, ROLE, READONLY/READWRITE, the INFO
// replication and cluster sections, and the hash slot a -MOVED names. A ticketd cluster is ONE
// Redis Cluster shard owning all 16,384 slots: its master is the Raft leader, its replicas the
// followers, each at its client address.
// Promises: what needs Raft state (CLUSTER SLOTS/SHARDS/NODES/INFO/MYID/..., ROLE) is answered
// on shard 0 (src/cluster/cluster_commands.cpp) through the admin path; KEYSLOT, HELP, READONLY
// and READWRITE here. Never: a subcommand that is not implemented answers anything but -ERR.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ticketd::server {

class Node;
class Shard;
struct Connection;

inline constexpr uint16_t kClusterSlots = 16384;

// Redis Cluster's key -> slot: CRC16 (XMODEM) of the key, or of its first non-empty {hash
// tag}, modulo 16384. A sequence name is the key; plain TICKET is `TICKET default`.
uint16_t key_hash_slot(std::string_view key);
uint16_t default_slot();  // key_hash_slot("default"): the slot a -MOVED for plain TICKET names

namespace cluster_api {

using Args = std::span<const std::string_view>;

void cmd_cluster(Shard& s, Connection* c, Args args, std::string& out);    // CLUSTER <sub> ...
void cmd_role(Shard& s, Connection* c, Args args, std::string& out);       // ROLE
void cmd_readonly(Shard& s, Connection* c, Args args, std::string& out);   // READONLY
void cmd_readwrite(Shard& s, Connection* c, Args args, std::string& out);  // READWRITE

// INFO's `# Replication` section, from what shard 0 last published (Node::replication()).
std::string info_replication(Node& node);
// INFO's `# Cluster` section: cluster_enabled:1 (redis-py's RedisCluster checks it first).
std::string info_cluster();

}  // namespace cluster_api
}  // namespace ticketd::server
