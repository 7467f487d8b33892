#!/bin/sh
# The certificates of a grading cluster (mutual TLS, see the README's "On a cluster"):
#
#     sh tools/cluster-certs.sh DIR [DAYS]
#
# makes a certificate authority of the course's own (DIR/ca.pem, and DIR/ca-key.pem, its private
# key: keep it off the cluster) and one certificate signed by it per role, each in a folder of its
# own holding ca.pem, cert.pem and key.pem: DIR/scheduler, DIR/worker (copy it to every worker)
# and DIR/client (the instructor's, for `grade-all --tls DIR/client`). Keys are readable by their
# owner only. Only what this CA signed can talk to the scheduler and the workers.
set -eu
dir=${1:?usage: sh tools/cluster-certs.sh DIR [DAYS]}
days=${2:-365}
umask 077
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/CN=hw2 grading cluster CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
    > "$dir/leaf.ext"
for role in scheduler worker client; do
    mkdir -p "$dir/$role"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=hw2 $role" \
        -keyout "$dir/$role/key.pem" -out "$dir/$role/request.pem" 2>/dev/null
    openssl x509 -req -in "$dir/$role/request.pem" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
        -days "$days" -extfile "$dir/leaf.ext" -out "$dir/$role/cert.pem" 2>/dev/null
    rm "$dir/$role/request.pem"
    cp "$dir/ca.pem" "$dir/$role/ca.pem"
    chmod 644 "$dir/$role/cert.pem" "$dir/$role/ca.pem"
done
rm -f "$dir/leaf.ext" "$dir/ca.srl"
chmod 644 "$dir/ca.pem"
echo "wrote $dir/ca.pem (ca-key.pem: keep it off the cluster) and $dir/{scheduler,worker,client}/{ca,cert,key}.pem"
