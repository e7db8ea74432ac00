# kafka.bash: a mock Kafka cluster per test (bin/test/kafka-mock: 3 brokers of librdkafka's mock on loopback), kcat as the independent client.

# kafka_start [-p PARTITIONS] TOPIC...: start a cluster with these topics;
# B is its bootstrap list, KM its pid.
kafka_start() {
	local parts=4
	if [ "${1:-}" = -p ]; then
		parts=$2
		shift 2
	fi
	require_tool kcat
	rm -f km.out
	"${CQRS_BIN:-$CQRS_REPO/bin}/test/kafka-mock" -p "$parts" "$@" >km.out 2>>km.err &
	KM=$!
	kwait '[ -s km.out ]'
	B=$(head -n 1 km.out)
	export B
}

# kafka_stop: stop the cluster (its data goes with it).
kafka_stop() {
	[ -n "${KM:-}" ] || return 0
	kill -TERM "$KM" 2>/dev/null || true
	wait "$KM" 2>/dev/null || true
	KM=
}

# brokers_down, brokers_up: every broker refuses connections, then takes them again.
brokers_down() { kill -USR1 "$KM"; kwait 'grep -q "brokers down" km.err'; }
brokers_up() { kill -USR2 "$KM"; }

# kcat_read TOPIC [FORMAT]: every record of TOPIC, to the end.
kcat_read() {
	timeout 60 kcat -C -b "$B" -t "$1" -e -q -f "${2:-%s\n}"
}

# kwait 'SHELL CODE': evaluate it every 100 ms until it succeeds, for up to
# 90 s (a rebalance waits for a session to time out).
kwait() {
	local i
	for i in $(seq 900); do
		eval "$*" && return 0
		sleep 0.1
	done
	echo "kwait: '$*' still false after 90 s" >&2
	return 1
}

# java_partition KEY PARTITIONS: where the Java client (and Kafka Connect)
# puts a record keyed KEY: murmur2 of the key's bytes as Kafka's
# Utils.murmur2 computes it, made positive, modulo the partition count.
# Written here from the algorithm, independently of librdkafka.
java_partition() {
	perl -e '
		use strict; use warnings;
		sub mul { my ($a, $b) = @_;
			return (($a * ($b & 0xffff)) + ((($a * ($b >> 16)) & 0xffff) << 16)) & 0xffffffff; }
		my ($key, $n) = @ARGV;
		my @d = unpack("C*", $key);
		my $len = @d;
		my ($m, $r) = (0x5bd1e995, 24);
		my $h = (0x9747b28c ^ $len) & 0xffffffff;
		my $i;
		for ($i = 0; $i + 4 <= $len; $i += 4) {
			my $k = $d[$i] | ($d[$i + 1] << 8) | ($d[$i + 2] << 16) | ($d[$i + 3] << 24);
			$k = mul($k, $m);
			$k ^= $k >> $r;
			$k = mul($k, $m);
			$h = mul($h, $m);
			$h ^= $k;
		}
		my $t = $len % 4;
		$h ^= $d[$i + 2] << 16 if $t >= 3;
		$h ^= $d[$i + 1] << 8 if $t >= 2;
		if ($t >= 1) { $h ^= $d[$i]; $h = mul($h, $m); }
		$h ^= $h >> 13;
		$h = mul($h, $m);
		$h ^= $h >> 15;
		print(($h & 0x7fffffff) % $n, "\n");
	' "$1" "$2"
}
