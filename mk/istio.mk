# Istio packaging and offline checks: `make oci` packs the filter as an OCI Wasm image and writes
# its digest into istio/wasmplugin.yaml; `make test-istio` checks that digest and every manifest.

OCI_TAG ?= 0.1.0
OCI_TAR := build/sluice-filter-oci.tar
OCI_TOOL := $(CARGO_TARGET_DIR)/release/sluice-wasm-oci
WASMPLUGIN := istio/wasmplugin.yaml

TEST_TARGETS += test-istio

.PHONY: oci oci-tool test-istio

oci-tool:
	cargo build --release -p sluice-wasm-oci

# Same module, same bytes: the tarball has fixed timestamps, so the digest only moves with the filter.
oci: build-filter oci-tool
	$(OCI_TOOL) $(WASM) $(OCI_TAR) --tag $(OCI_TAG) --write-sha256 $(WASMPLUGIN)

# The packer's own fmt, clippy and unit tests run with the workspace's (`lint`, `test-unit`).
test-istio: build-filter oci-tool
	@mkdir -p build
	$(OCI_TOOL) $(WASM) build/sluice-filter-oci.check.tar --tag $(OCI_TAG) --check-sha256 $(WASMPLUGIN)
	@# skopeo, another OCI implementation, must read the same digest and copy the image unchanged.
	test "sha256:$$(skopeo inspect --raw oci-archive:build/sluice-filter-oci.check.tar | sha256sum | cut -d' ' -f1)" \
	    = "sha256:$$(sed -n 's/^ *sha256: *"\?\([0-9a-f]*\)"\?.*/\1/p' $(WASMPLUGIN))"
	rm -rf build/sluice-filter-oci.check && skopeo copy -q --preserve-digests \
	    oci-archive:build/sluice-filter-oci.check.tar oci:build/sluice-filter-oci.check:$(OCI_TAG)
	node istio/validate/validate.mjs $(CURDIR)
